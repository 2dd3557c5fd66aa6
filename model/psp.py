"""PSP (Zhou et al., "Positive Sample Propagation along the Audio-Visual Event Line", CVPR
2021), as its authors' code builds it (docs/methods.md): AVEL's audio-guided visual
attention (AVGA), a BiLSTM per modality, and positive sample propagation between the two
sequences.

Positive sample propagation (PSP), on the audio and visual sequences a, v (B, T, d):
four branches v1, v2, a1, a2 = Dropout(ReLU(Linear(.))) without bias; similarities
S = ReLU(v2 a1^T / sqrt(d)) (B, T, T); each row of S (and of S^T) normalised to sum 1,
entries not above the threshold set to 0 (and, fully supervised, the rows renormalised):
gamma_va, gamma_av; then v' = v + gamma_va a2 and a' = a + gamma_av v1 (fully supervised
also through Dropout(ReLU(Linear(.)))), one shared LayerNorm, and the fused sequence
(v' + a') / 2.

Fully supervised: the segment classifier's C + 1 scores (cross-entropy), plus the
audio-visual pair similarity loss (AVPS): the cosine of v' and a' per segment, made a
distribution over the T segments, against 1/K on a video's K event segments (squared
error, weight 100). Weakly supervised: each segment's scores weighted by
sigmoid(ReLU(Linear(scores))), averaged over time, softmax: the video's label scores
(binary cross-entropy against the video label). Every segment is the argmax of its C + 1
scores (class C: background).
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from model.attention import AudioGuidedVisualAttention
from model.criterion import batch_counts, event_mask
from model.heads import LabelsEachSegment

NAME = 'PSP'
SETTINGS = ('supervised', 'weak')
MODEL_KEYS = ('lstm_hidden', 'attention_hidden', 'psp_threshold', 'psp_dropout')


def bias_free(width_in, width_out, xavier=True):
    layer = nn.Linear(width_in, width_out, bias=False)
    if xavier:
        nn.init.xavier_uniform_(layer.weight)
    return layer


class PositiveSamplePropagation(nn.Module):
    """(a, v) (B, T, d) each -> (fused, v', a') (B, T, d) each (see the module's docstring).
    `full`: the fully supervised variant (renormalised rows, output projections)."""

    def __init__(self, dim, threshold, dropout, full):
        super().__init__()
        self.threshold, self.full = threshold, full
        self.v1, self.v2, self.a1, self.a2 = (bias_free(dim, dim) for _ in range(4))
        if full:
            self.v_out, self.a_out = bias_free(dim, dim), bias_free(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def branch(self, layer, x):
        return self.dropout(F.relu(layer(x)))

    def propagation(self, similarity):
        """Each row of `similarity` normalised, its entries not above the threshold dropped
        (and, fully supervised, renormalised)."""
        beta = similarity / (similarity.sum(-1, keepdim=True) + 1e-8)
        gamma = beta * (beta > self.threshold)
        return gamma / (gamma.sum(-1, keepdim=True) + 1e-8) if self.full else gamma

    def forward(self, a, v):
        v1, v2 = self.branch(self.v1, v), self.branch(self.v2, v)
        a1, a2 = self.branch(self.a1, a), self.branch(self.a2, a)
        similarity = F.relu(v2 @ a1.transpose(1, 2) / math.sqrt(v.shape[-1]))   # (B, T, T)
        v = v + self.propagation(similarity) @ a2
        a = a + self.propagation(similarity.transpose(1, 2)) @ v1
        if self.full:
            v, a = self.branch(self.v_out, v), self.branch(self.a_out, a)
        v, a = self.norm(v), self.norm(a)
        return 0.5 * (v + a), v, a


class PSP(LabelsEachSegment, nn.Module):
    """forward(audio (B, T, A), visual (B, T, H, W, V)) -> {'segment_logits': (B, T, C + 1),
    and fully supervised 'av_cosine': (B, T), weakly 'video_score': (B, C + 1)}."""

    def __init__(self, *, setting, num_classes, audio_dim, visual_dim, positions, lstm_hidden,
                 attention_hidden, psp_threshold, psp_dropout):
        super().__init__()
        self.setting, self.num_classes = setting, num_classes
        full = setting == 'supervised'
        h = lstm_hidden
        # Fully supervised, both inputs are first projected (two bias-free linear maps, as
        # the authors' code has them) and the attention hears the projected audio.
        self.audio_in = nn.Sequential(bias_free(audio_dim, 2 * h, False),
                                      bias_free(2 * h, h, False)) if full else None
        self.attention = AudioGuidedVisualAttention(h if full else audio_dim, visual_dim,
                                                    attention_hidden, positions)
        self.visual_in = (nn.Sequential(bias_free(visual_dim, 2 * h, False),
                                        bias_free(2 * h, h, False)) if full
                          else nn.Linear(visual_dim, h))
        self.audio_lstm = nn.LSTM(h if full else audio_dim, h, batch_first=True,
                                  bidirectional=True)
        self.visual_lstm = nn.LSTM(h, h, batch_first=True, bidirectional=True)
        self.psp = PositiveSamplePropagation(2 * h, psp_threshold, psp_dropout, full)
        self.hidden = bias_free(2 * h, 64)
        self.classify = bias_free(64, num_classes + 1)
        self.segment_weight = None if full else nn.Linear(num_classes + 1, 1, bias=False)

    def forward(self, audio, visual):
        # audio (B, T, A), visual (B, T, H, W, V)
        if self.audio_in is not None:
            audio = self.audio_in(audio)                          # (B, T, h)
        attended = self.attention(visual.flatten(2, 3), audio)    # (B, T, V)
        a, _ = self.audio_lstm(audio)                             # (B, T, 2h)
        v, _ = self.visual_lstm(self.visual_in(attended))         # (B, T, 2h)
        fused, v, a = self.psp(a, v)
        scores = self.classify(F.relu(self.hidden(fused)))        # (B, T, C + 1)
        if self.setting == 'supervised':
            return {'segment_logits': scores, 'av_cosine': F.cosine_similarity(v, a, dim=-1)}
        weighted = torch.sigmoid(F.relu(self.segment_weight(scores))) * scores
        return {'segment_logits': weighted,
                'video_score': torch.softmax(weighted.mean(1), dim=-1)}   # (B, C + 1)


def avps_target(targets, background):
    """(B, T): 1/K on the K event segments of each video, 0 elsewhere (and on a video without
    events)."""
    events = event_mask(targets, background, torch.float32)
    return events / events.sum(1, keepdim=True).clamp_min(1)


class PSPCriterion(nn.Module):
    """Fully supervised: segment_ce (cross-entropy of each segment's C + 1 scores) and avps;
    weakly supervised: video_bce (binary cross-entropy of the video scores against the video
    label)."""

    def __init__(self, setting, num_classes, weights):
        super().__init__()
        self.setting, self.background = setting, num_classes
        self.weight_dict = dict(weights)

    def forward(self, outputs, targets, counts=None):
        counts = counts or batch_counts(targets)
        if self.setting == 'weak':
            bce = F.binary_cross_entropy(outputs['video_score'], targets['video_label'],
                                         reduction='sum')
            return {'video_bce': bce / (counts['videos'] * targets['video_label'].shape[1])}
        logits = outputs['segment_logits']
        ce = F.cross_entropy(logits.flatten(0, 1), targets['segment'].flatten(), reduction='sum')
        similarity = F.relu(outputs['av_cosine'])
        similarity = similarity / (similarity.sum(1, keepdim=True) + 1e-8)       # (B, T)
        avps = ((similarity - avps_target(targets, self.background)) ** 2).sum()
        return {'segment_ce': ce / counts['segments'], 'avps': avps / counts['segments']}


def build(args):
    return PSP(**{k: v for k, v in args.items() if k != 'model'})


def build_criterion(cfg, setting, num_classes):
    terms = ('segment_ce', 'avps') if setting == 'supervised' else ('video_bce',)
    return PSPCriterion(setting, num_classes, {t: cfg[f'{t}_weight'] for t in terms})
