"""Cross-modality localization's loop: the training examples of each kind of matcher, an
epoch, and localizing each video's event (docs/cml.md)."""
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.errors import check_interrupt
from model.matching import contrastive_loss, distance, modalities, window_scores, windows


def examples(data, split, unit, batch_size, generator, min_length=2):
    """Yield (audio, visual, event) batches of `split` in a random order drawn from
    `generator`: (B, 1, .) aligned segment pairs ('pairs': every segment of every video once),
    (B, l, .) windows ('clips': every video once, in a window of one length l per batch, at
    least `min_length` or the videos' length, at a random start) or (B, T, .) whole videos."""
    rows = data.splits[split]
    T = data.spec.num_segments
    if unit == 'pairs':
        order = torch.randperm(len(rows) * T, generator=generator).to(rows.device)
        for at in range(0, len(order), batch_size):
            chunk = order[at:at + batch_size]
            r, t = rows[chunk // T], chunk % T
            yield (data.audio[r, t].unsqueeze(1), data.visual[r, t].unsqueeze(1),
                   data.event[r, t].unsqueeze(1))
        return
    order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
    for at in range(0, len(order), batch_size):
        r = order[at:at + batch_size]
        if unit == 'videos':
            yield data.audio[r], data.visual[r], data.event[r]
            continue
        shortest = min(min_length, T)
        length = int(torch.randint(shortest, T + 1, (), generator=generator))
        start = torch.randint(0, T - length + 1, (len(r),), generator=generator).to(r.device)
        t = start[:, None] + torch.arange(length, device=r.device)           # (B, l)
        yield data.audio[r[:, None], t], data.visual[r[:, None], t], data.event[r[:, None], t]


def loss_of(model, audio, visual, event, cfg):
    """The training loss of one batch: the contrastive loss of the aligned pairs' distances
    (AVEL protocol), or the event BCE of DCMR's per-segment logits."""
    if model.unit == 'videos':
        return F.binary_cross_entropy_with_logits(model(audio, visual, event), event.float())
    d = distance(model.embed('audio', audio), model.embed('visual', visual))   # (B, l)
    return contrastive_loss(d, event, cfg['margin'])


def train_epoch(model, data, optimizer, cfg, generator, progress=True):
    """One epoch over the training split; returns {'loss': the mean batch loss}."""
    model.train()
    batches = examples(data, 'train', model.unit, cfg['batch_size'], generator)
    total, steps = 0.0, 0
    for audio, visual, event in tqdm(batches, desc='train', leave=False, disable=not progress):
        check_interrupt()
        loss = loss_of(model, audio, visual, event, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg['clip_gradient'] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['clip_gradient'])
        optimizer.step()
        total, steps = total + float(loss.detach()), steps + 1
    return {'loss': total / max(steps, 1)}


@torch.no_grad()
def localize(model, data, split, direction, batch_size):
    """Each video's predicted event start in `split`, for the videos whose event is partial
    (1 to T - 1 segments: a full-length or empty event has nothing to find). Returns
    (rows (N,), predicted start (N,), true start (N,), length (N,)), in split order.

    AVEL protocol: the query clip (the event's segments of the query modality) against every
    window of as many segments of the other modality; the least summed distance wins.
    DCMR: the window of the true length with the largest summed event logits. Ties go to
    the earliest window (as numpy's argmin and argmax in the releases)."""
    model.eval()
    rows = data.splits[split]
    start, length = data.spans(split)
    T = data.spec.num_segments
    keep = (length > 0) & (length < T)
    rows, start, length = rows[keep], start[keep], length[keep]
    predicted = torch.empty_like(start)
    source = {'audio': data.audio, 'visual': data.visual}
    asked, answer = modalities(direction)
    for l in length.unique().tolist():
        where = (length == l).nonzero().squeeze(1)
        for at in range(0, len(where), batch_size):
            check_interrupt()
            i = where[at:at + batch_size]
            r = rows[i]
            if model.unit == 'videos':
                logits = model(data.audio[r], data.visual[r], data.event[r])      # (n, T)
                predicted[i] = logits.unfold(1, l, 1).sum(-1).argmax(1)
                continue
            t = start[i, None] + torch.arange(l, device=r.device)               # (n, l)
            query = source[asked][r[:, None], t]                                  # (n, l, D)
            scores = window_scores(model, query, windows(source[answer][r], l), asked, answer)
            predicted[i] = scores.argmin(1)
    return rows, predicted, start, length


def accuracy(predicted, start):
    """Percent of videos whose predicted start is the true one (None without videos)."""
    return 100.0 * float((predicted == start).float().mean()) if len(start) else None
