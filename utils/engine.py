"""One training epoch and one evaluation, shared by both settings.

Batches are rows of tensors already on the device; nothing here synchronises with the
device per step: losses, correct counts and the first non-finite step are accumulated as
device tensors and read once per epoch.
"""
import contextlib

import torch
from tqdm import tqdm

from model.criterion import total_loss
from utils.errors import UserError


class NonFiniteLoss(UserError):
    pass


def autocast(device, amp):
    if amp == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(model, criterion, data, optimizer, epoch, cfg, generator, progress=True):
    """Train on every training video once, in an order drawn from `generator`.

    Returns {'loss': mean total, term: mean per term, 'accuracy': segment accuracy (%)}.
    Raises NonFiniteLoss naming the first step whose loss was NaN or Inf.
    """
    model.train()
    rows = data.splits['train']
    rows = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    device = rows.device
    names = list(criterion.weight_dict)
    sums = torch.zeros(len(names) + 1, device=device)             # terms..., total
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    batch = cfg['batch_size']
    steps = range(0, len(rows), batch)
    for step, start in enumerate(tqdm(steps, desc=f'epoch {epoch} train', unit='step',
                                      disable=not progress, leave=False)):
        audio, visual, targets = data.batch(rows[start:start + batch])
        with autocast(device, cfg['amp']):
            outputs = model(audio, visual)
        outputs = {k: v.float() for k, v in outputs.items()}
        terms = criterion(outputs, targets)
        loss = total_loss(terms, criterion.weight_dict)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg['clip_gradient'] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['clip_gradient'])
        optimizer.step()
        with torch.no_grad():
            n = len(audio)
            sums += torch.stack([terms[k] for k in names] + [loss]) * n
            correct += (model.predict(outputs) == targets['segment']).sum()
            bad = ~torch.isfinite(loss) & (first_bad < 0)
            first_bad = torch.where(bad, torch.full_like(first_bad, step + 1), first_bad)
    if int(first_bad) >= 0:
        kept = (f'last.pth.tar of epoch {epoch - 1} is kept' if epoch > 1
                else 'no checkpoint was written')
        raise NonFiniteLoss(f'loss became NaN or Inf at epoch {epoch}, step {int(first_bad)}; '
                            f'training stopped and {kept}; try a lower --lr or --clip_gradient')
    means = (sums / len(rows)).tolist()
    stats = dict(zip(names, means[:-1]))
    stats['loss'] = means[-1]
    stats['accuracy'] = 100.0 * int(correct) / rows.numel() / data.segment.shape[1]
    return stats


@torch.no_grad()
def evaluate(model, data, split, cfg, progress=True):
    """Segment accuracy (%) over `split` and the (N, T) predicted classes, in split order."""
    model.eval()
    rows = data.splits[split]
    preds = []
    for start in tqdm(range(0, len(rows), cfg['eval_batch_size']), desc=f'eval {split}',
                      unit='step', disable=not progress, leave=False):
        audio, visual, _ = data.batch(rows[start:start + cfg['eval_batch_size']])
        with autocast(rows.device, cfg['amp']):
            outputs = model(audio, visual)
        preds.append(model.predict({k: v.float() for k, v in outputs.items()}))
    preds = torch.cat(preds)                                       # (N, T)
    correct = int((preds == data.segment[rows]).sum())
    return 100.0 * correct / preds.numel(), preds
