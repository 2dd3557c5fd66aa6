"""One training epoch and one inference pass, shared by both settings and by predict.

Batches are rows of tensors already on the device; nothing here synchronises with the
device per step: losses, correct counts and the first non-finite step are accumulated as
device tensors and read once per epoch.
"""
import contextlib

import torch
from tqdm import tqdm

from core.errors import UserError
from model.criterion import total_loss


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
        batch_rows = rows[start:start + batch]
        audio, visual = data.inputs(batch_rows)
        targets = data.targets(batch_rows)
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
            sums += torch.stack([terms[k] for k in names] + [loss]) * len(batch_rows)
            correct += (model.predict(outputs) == targets['segment']).sum()
            bad = ~torch.isfinite(loss) & (first_bad < 0)
            first_bad = torch.where(bad, torch.full_like(first_bad, step + 1), first_bad)
    # One read of the device per epoch: the first non-finite loss, and whether the weights
    # are still finite (a finite loss can still leave Inf or NaN weights behind, e.g. with
    # an enormous learning rate), so that a broken epoch is never evaluated or saved.
    weights_ok = torch.stack([p.isfinite().all() for p in model.parameters()]).all()
    bad_step, weights_ok = int(first_bad), bool(weights_ok)
    if bad_step >= 0 or not weights_ok:
        what = (f'loss became NaN or Inf at epoch {epoch}, step {bad_step}' if bad_step >= 0
                else f'the weights became NaN or Inf in epoch {epoch}')
        kept = (f'last.pth.tar of epoch {epoch - 1} is kept' if epoch > 1
                else 'no checkpoint was written')
        raise NonFiniteLoss(f'{what}; training stopped and {kept}; try a lower --lr or '
                            '--clip_gradient')
    means = (sums / len(rows)).tolist()
    stats = dict(zip(names, means[:-1]))
    stats['loss'] = means[-1]
    stats['accuracy'] = 100.0 * int(correct) / rows.numel() / data.segment.shape[1]
    return stats


@torch.no_grad()
def infer(model, data, rows, batch_size, amp='none', progress=True, desc='eval'):
    """The model's (N, T) predicted classes and (N, T) confidences for `rows` of `data`, in
    row order, on the data's device (no host sync between batches)."""
    model.eval()
    preds, confidence = [], []
    with tqdm(total=len(rows), desc=desc, unit='video', disable=not progress, leave=False) as bar:
        for start in range(0, len(rows), batch_size):
            audio, visual = data.inputs(rows[start:start + batch_size])
            with autocast(rows.device, amp):
                outputs = model(audio, visual)
            outputs = {k: v.float() for k, v in outputs.items()}
            preds.append(model.predict(outputs))
            confidence.append(model.confidence(outputs))
            bar.update(len(audio))
    return torch.cat(preds), torch.cat(confidence)


def evaluate(model, data, split, cfg, progress=True):
    """Segment accuracy (%) over `split` and the (N, T) predicted classes, in split order."""
    rows = data.splits[split]
    preds, _ = infer(model, data, rows, cfg['eval_batch_size'], cfg['amp'], progress,
                     f'eval {split}')
    correct = int((preds == data.segment[rows]).sum())
    return 100.0 * correct / preds.numel(), preds
