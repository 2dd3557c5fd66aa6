"""The training step, one training epoch and one inference pass, shared by both settings,
by predict and by the benchmarks.

Batches come from `data.batches`: rows of tensors already on the device, or streamed from
the files. Nothing here synchronises with the device per step: losses, correct counts and
the first non-finite step are accumulated as device tensors and read once per epoch.
Under torchrun each rank trains on its part of every global batch (engine/distributed.py)
and the epoch's sums are added over the ranks.
"""
import contextlib

import numpy as np
import torch
from tqdm import tqdm

from core.errors import UserError, check_interrupt
from engine import distributed as dist
from model.criterion import batch_counts, total_loss


class NonFiniteLoss(UserError):
    pass


def autocast(device, amp):
    if amp == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_optimizer(model, cfg, device):
    """(Adam, MultiStepLR) of the config's recipe for `model`'s parameters. On CUDA the fused
    kernel updates all parameters in one launch; the CPU keeps the default."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'], weight_decay=cfg['weight_decay'],
                                 fused=device.type == 'cuda')
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg['lr_milestones'],
                                                           cfg['lr_gamma'])


def train_step(model, criterion, optimizer, audio, visual, targets, cfg, counts=None,
               scale=1.0):
    """One optimizer step on a batch: forward (in cfg['amp']), the criterion's terms, the
    weighted total, backward (the total times `scale`), gradient clipping to
    cfg['clip_gradient'] (0: none) and the step. Returns (outputs, terms, total); `counts`:
    what the terms are divided by (the criterion's own batch by default)."""
    with autocast(audio.device, cfg['amp']):
        outputs = model(audio, visual)
    outputs = {k: v.float() for k, v in outputs.items()}
    terms = criterion(outputs, targets, counts)
    loss = total_loss(terms, criterion.weight_dict)
    optimizer.zero_grad(set_to_none=True)
    (loss * scale if scale != 1.0 else loss).backward()
    if cfg['clip_gradient'] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['clip_gradient'])
    optimizer.step()
    return outputs, terms, loss


def float32_values(values):
    """Python floats of float32 `values`, written with the decimals float32 has (0.4548799,
    not 0.45487990975379944), so that JSON shows no digits the numbers never had."""
    return [float(str(np.float32(v))) for v in values]


def train_one_epoch(model, criterion, data, optimizer, epoch, cfg, generator, progress=True):
    """Train on every training video once, in an order drawn from `generator`.

    `model` may be wrapped in DistributedDataParallel (under torchrun). Returns {'loss':
    mean total, term: mean per term, 'accuracy': segment accuracy (%)} over all ranks.
    Raises NonFiniteLoss naming the first step whose loss was NaN or Inf.
    """
    model.train()
    net = getattr(model, 'module', model)        # the DMIN inside a DDP wrapper
    rows = data.splits['train']
    rows = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    device = rows.device
    names = list(criterion.weight_dict)
    sums = torch.zeros(len(names) + 1, device=device)             # terms..., total
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    global_batches = rows.split(cfg['batch_size'])
    # This rank's part of each global batch. A part can only be empty in a last batch with
    # fewer videos than ranks; that rank then runs one video whose loss counts zero times,
    # so that every rank still takes part in the gradient averaging.
    parts = [dist.part(b) for b in global_batches]
    weights = [1.0 if len(p) else 0.0 for p in parts]
    parts = [p if len(p) else b[:1] for p, b in zip(parts, global_batches)]
    batches = tqdm(data.batches(parts), total=len(parts), desc=f'epoch {epoch} train',
                   unit='step', disable=not progress, leave=False)
    for step, (batch_rows, audio, visual) in enumerate(batches):
        check_interrupt()
        targets = data.targets(batch_rows)
        # Terms are divided by the counts of the global batch, and DDP averages the ranks'
        # gradients (the world size turns that average back into the sum): the ranks'
        # losses add up to the loss one process computes on the whole batch.
        distributed = dist.world() > 1
        outputs, terms, loss = train_step(
            model, criterion, optimizer, audio, visual, targets, cfg,
            batch_counts(data.targets(global_batches[step])) if distributed else None,
            weights[step] * dist.world() if distributed else 1.0)
        with torch.no_grad():
            n = len(global_batches[step]) * weights[step]
            sums += torch.stack([terms[k] for k in names] + [loss]) * n
            if weights[step]:
                correct += (net.predict(outputs) == targets['segment']).sum()
            bad = ~torch.isfinite(loss) & (first_bad < 0)
            first_bad = torch.where(bad, torch.full_like(first_bad, step + 1), first_bad)
    dist.all_sum(sums)
    dist.all_sum(correct)
    dist.all_max(first_bad)
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
    means = float32_values(sums / len(rows))
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
        for _, audio, visual in data.batches(rows.split(batch_size)):
            check_interrupt()
            with autocast(data.device, amp):
                outputs = model(audio, visual)
            outputs = {k: v.float() for k, v in outputs.items()}
            preds.append(model.predict(outputs))
            confidence.append(model.confidence(outputs))
            bar.update(len(audio))
    if not preds:   # this rank's part of a split smaller than the number of ranks
        T = data.spec.num_segments
        return (torch.empty((0, T), dtype=torch.int64, device=data.device),
                torch.empty((0, T), device=data.device))
    return torch.cat(preds), torch.cat(confidence)


def evaluate(model, data, split, cfg, progress=True):
    """The (N, T) predicted classes of `split`, in split order (reports/metrics.py scores
    them). Under torchrun each rank infers its part and every rank gets all predictions."""
    rows = data.splits[split]
    preds, _ = infer(model, data, dist.part(rows), cfg['eval_batch_size'], cfg['amp'],
                     progress, f'eval {split}')
    return dist.gather_parts(preds, len(rows))
