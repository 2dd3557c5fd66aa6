"""Cross-modality localization (AVE's third task, docs/cml.md): given the event segments of
one modality as a query, find the window of the other modality where they are.

The AVEL protocol: a matcher embeds each segment of each modality; a query of l segments
and each window of l segments of the other modality score the sum of their segments'
Euclidean distances, and the window of least score is the answer. Two matchers:

- AVELMatcher (Tian et al., ECCV 2018): a two-layer MLP per modality (LeakyReLU 0.3),
  trained on the aligned pairs of every segment (event: pulled together; background: pushed
  to the margin) with the contrastive loss.
- DMINMatcher: each modality's clip through DMIN's intra-modal encoder (a Transformer over
  the clip's segments), then a linear map to the embedding; it sees only the clip it embeds
  (the query, or one window of the other modality), so it follows the same protocol.

The DCMR protocol (DMIN's release): DCMR reads both whole aligned sequences and the true
event segments, and scores windows of the true length with a per-segment event classifier;
see docs/cml.md for why its numbers are not comparable with the AVEL protocol's.

Every model here has NAME, MODEL_KEYS and `unit`: what one training example is ('pairs':
one aligned segment pair; 'clips': one window of a video; 'videos': a whole video).
"""
import torch
from torch import nn
import torch.nn.functional as F

from model.dima import DIMADecoderLayer
from model.encoder import IntraModalEncoder

DIRECTIONS = ('a2v', 'v2a')   # audio query, visual answer; visual query, audio answer
EPS = 1e-7


def distance(x, y):
    """Euclidean distance over the last axis (never below sqrt(EPS): its gradient is finite)."""
    return (x - y).pow(2).sum(-1).clamp_min(EPS).sqrt()


def contrastive_loss(d, same, margin):
    """mean(y d^2 + (1 - y) max(margin - d, 0)^2) over aligned pairs of distances `d` and
    whether each pair is of the event (`same`, bool)."""
    y = same.to(d.dtype)
    return (y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2)).mean()


def tower(in_dim, hidden, out_dim, slope):
    layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(slope),
                           nn.Linear(hidden, out_dim))
    for layer in layers[::2]:   # as the authors' Keras layers start: Glorot weights, no bias
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layers


class AVELMatcher(nn.Module):
    """embed(modality, x (..., D)) -> (..., E): each segment on its own."""
    unit = 'pairs'

    def __init__(self, *, audio_dim, visual_dim, hidden, embed_dim, slope):
        super().__init__()
        self.audio = tower(audio_dim, hidden, embed_dim, slope)
        self.visual = tower(visual_dim, hidden, embed_dim, slope)

    def embed(self, modality, x):
        return (self.audio if modality == 'audio' else self.visual)(x)


class DMINMatcher(nn.Module):
    """embed(modality, clips (N, l, D)) -> (N, l, E): each clip through its modality's
    intra-modal encoder, which sees that clip only."""
    unit = 'clips'

    def __init__(self, *, audio_dim, visual_dim, d_model, n_heads, ff_dim, encoder_layers,
                 encoder_dropout, embed_dim):
        super().__init__()
        self.audio_encoder = IntraModalEncoder(audio_dim, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_out = nn.Linear(d_model, embed_dim)
        self.visual_out = nn.Linear(d_model, embed_dim)

    def embed(self, modality, clips):
        if modality == 'audio':
            return self.audio_out(self.audio_encoder(clips))
        return self.visual_out(self.visual_encoder(clips))


def modalities(direction):
    """(query modality, answer modality) of `direction`."""
    return ('audio', 'visual') if direction == 'a2v' else ('visual', 'audio')


def windows(x, length):
    """(N, T, D) -> (N, T - length + 1, length, D): every window of `length` segments."""
    return x.unfold(1, length, 1).transpose(-1, -2)


def window_scores(model, query, other, query_modality, answer_modality):
    """(N, W): the summed distance of each video's query clip (N, l, Dq) to each of its W
    windows (N, W, l, Da) of the other modality."""
    N, W, length, _ = other.shape
    q = model.embed(query_modality, query)                                    # (N, l, E)
    a = model.embed(answer_modality, other.flatten(0, 1)).view(N, W, length, -1)
    return distance(q.unsqueeze(1), a).sum(-1)                                # (N, W)


def cross_match(query, other, event):
    """DCMR's cross matching: each video's query decoded at its event segments, averaged over
    the channels (one number per event segment, a (l,)), multiplies every window of l
    segments of the other sequence in turn, so that where windows overlap the products
    compound: segment p of `other` (B, T, d) is scaled by the product of a[p - k] over the
    windows k that cover it. A video without event segments is left as it is. Videos of
    one event length are scaled together, one product per window position."""
    B, T, d = other.shape
    length = event.sum(1)
    scale = torch.ones(B, T, dtype=other.dtype, device=other.device)
    for l in length.unique().tolist():
        if l == 0:
            continue
        rows = (length == l).nonzero().squeeze(1)
        a = query[rows][event[rows]].view(len(rows), l, d).mean(-1)         # (n, l)
        part = torch.ones(len(rows), T, dtype=other.dtype, device=other.device)
        for k in range(T - l + 1):
            part = part * F.pad(a, (k, T - l - k), value=1.0)
        scale = scale.index_put((rows,), part)
    return other * scale.unsqueeze(-1)


class DCMR(nn.Module):
    """forward(audio (B, T, A), visual (B, T, V), event (B, T) bool) -> (B, T) event logits
    of the answer modality's segments. DMIN's encoders and DIMA decoders, the cross matching,
    and a linear event classifier per segment."""
    unit = 'videos'

    def __init__(self, *, direction, audio_dim, visual_dim, d_model, n_heads, ff_dim,
                 encoder_layers, encoder_dropout, decoder_dropout, dima_lambda):
        super().__init__()
        self.direction = direction
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_encoder = IntraModalEncoder(audio_dim, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_decoder = DIMADecoderLayer(visual_dim, d_model, n_heads, ff_dim,
                                               decoder_dropout, dima_lambda)
        self.audio_decoder = DIMADecoderLayer(audio_dim, d_model, n_heads, ff_dim,
                                              decoder_dropout, dima_lambda)
        self.classify = nn.Linear(d_model, 1)

    def forward(self, audio, visual, event):
        a = self.audio_decoder(audio, self.visual_encoder(visual))     # (B, T, d)
        v = self.visual_decoder(visual, self.audio_encoder(audio))     # (B, T, d)
        query, other = (a, v) if self.direction == 'a2v' else (v, a)
        return self.classify(cross_match(query, other, event)).squeeze(-1)


NAME = {'avel': 'AVEL matcher', 'dmin': 'DMIN matcher', 'dcmr': 'DMIN DCMR'}
MODEL_KEYS = {
    'avel': ('hidden', 'embed_dim', 'slope'),
    'dmin': ('d_model', 'n_heads', 'ff_dim', 'encoder_layers', 'encoder_dropout', 'embed_dim'),
    'dcmr': ('d_model', 'n_heads', 'ff_dim', 'encoder_layers', 'encoder_dropout',
             'decoder_dropout', 'dima_lambda'),
}
CLASSES = {'avel': AVELMatcher, 'dmin': DMINMatcher, 'dcmr': DCMR}


def matcher_kind(cfg):
    """The model of a config: its --model under the AVEL protocol, DCMR under --protocol dcmr."""
    return 'dcmr' if cfg['protocol'] == 'dcmr' else cfg['model']


def matcher_args(spec, cfg):
    """What a matcher is built from (a checkpoint stores it): the kind, the feature widths
    of the data's spec and the kind's keys of `cfg` (DCMR: also the direction)."""
    kind = matcher_kind(cfg)
    extra = {'direction': cfg['direction']} if kind == 'dcmr' else {}
    return {'matcher': kind, 'audio_dim': spec.audio_dim, 'visual_dim': spec.visual_dim,
            **extra, **{k: cfg[k] for k in MODEL_KEYS[kind]}}


def build_matcher(args):
    """The model of a dict made by matcher_args (or read from a checkpoint); it keeps the dict
    as `model.args`."""
    kind = args.get('matcher')
    if not isinstance(kind, str) or kind not in CLASSES:
        raise ValueError(f"no matcher {kind!r}; the matchers are {', '.join(CLASSES)}")
    model = CLASSES[kind](**{k: v for k, v in args.items() if k != 'matcher'})
    model.args = dict(args)
    return model
