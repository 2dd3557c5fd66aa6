"""AVEL (Tian et al., "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018),
as its authors' code builds it (docs/methods.md): audio-guided visual attention, a BiLSTM
per modality, and a segment classifier over the C + 1 labels.

- fusion 'att' (A+V-att): concat[audio, visual] -> ReLU -> Linear 64 -> ReLU -> Linear C + 1.
- fusion 'dmrn': the dual multimodal residual network, one block:
  m = (U_v(h_v) + U_a(h_a)) / 2, fused = (tanh(h_a + m) + tanh(h_v + m)) / 2, then Linear C + 1.
Weakly supervised: the segment scores, max over time, softmax: the video's label scores.
Every segment is the argmax of its C + 1 scores (class C: background). As in the authors'
code, the loss is MultiLabelSoftMarginLoss on the softmax of the scores.
"""
import torch
from torch import nn
import torch.nn.functional as F

from model.attention import AudioGuidedVisualAttention
from model.criterion import batch_counts
from model.heads import LabelsEachSegment

NAME = 'AVEL'
SETTINGS = ('supervised', 'weak')
MODEL_KEYS = ('avel_fusion', 'lstm_hidden', 'attention_hidden')
FUSIONS = ('att', 'dmrn')


class AVEL(LabelsEachSegment, nn.Module):
    """forward(audio (B, T, A), visual (B, T, H, W, V)) -> {'segment_logits': (B, T, C + 1)}
    (and, weakly supervised, 'video_score': (B, C + 1))."""

    def __init__(self, *, setting, num_classes, audio_dim, visual_dim, positions, avel_fusion,
                 lstm_hidden, attention_hidden):
        super().__init__()
        if avel_fusion not in FUSIONS:
            raise ValueError(f'avel_fusion must be one of {FUSIONS}, got {avel_fusion!r}')
        self.setting, self.num_classes, self.fusion = setting, num_classes, avel_fusion
        # The authors' code initialises the weights with Xavier's rule in A+V-att only.
        self.attention = AudioGuidedVisualAttention(audio_dim, visual_dim, attention_hidden,
                                                    positions, xavier=avel_fusion == 'att')
        self.audio_lstm = nn.LSTM(audio_dim, lstm_hidden, batch_first=True, bidirectional=True)
        self.visual_lstm = nn.LSTM(visual_dim, lstm_hidden, batch_first=True,
                                   bidirectional=True)
        width, labels = 2 * lstm_hidden, num_classes + 1
        if avel_fusion == 'att':
            self.hidden = nn.Linear(2 * width, 64)
            self.classify = nn.Linear(64, labels)
            nn.init.xavier_uniform_(self.hidden.weight)
        else:
            self.visual_residual = nn.Sequential(nn.Linear(width, width), nn.Tanh(),
                                                 nn.Linear(width, width))
            self.audio_residual = nn.Sequential(nn.Linear(width, width), nn.Tanh(),
                                                nn.Linear(width, width))
            self.classify = nn.Linear(width, labels)
        nn.init.xavier_uniform_(self.classify.weight)

    def forward(self, audio, visual):
        # audio (B, T, A), visual (B, T, H, W, V)
        attended = self.attention(visual.flatten(2, 3), audio)    # (B, T, V)
        h_a, _ = self.audio_lstm(audio)                           # (B, T, 2h), the raw audio
        h_v, _ = self.visual_lstm(attended)                       # (B, T, 2h)
        if self.fusion == 'att':
            logits = self.classify(F.relu(self.hidden(F.relu(torch.cat([h_a, h_v], -1)))))
        else:
            m = 0.5 * (self.visual_residual(h_v) + self.audio_residual(h_a))
            logits = self.classify(0.5 * (torch.tanh(h_a + m) + torch.tanh(h_v + m)))
        out = {'segment_logits': logits}                          # (B, T, C + 1)
        if self.setting == 'weak':
            out['video_score'] = torch.softmax(logits.amax(1), dim=-1)   # (B, C + 1)
        return out


class AVELCriterion(nn.Module):
    """segment_msm (supervised): MultiLabelSoftMarginLoss of each segment's softmax scores
    against its one-hot label; video_msm (weak): of the video's softmax scores against its
    video label."""

    def __init__(self, setting, num_classes, weight):
        super().__init__()
        self.setting, self.labels = setting, num_classes + 1
        self.term = 'segment_msm' if setting == 'supervised' else 'video_msm'
        self.weight_dict = {self.term: weight}
        self.msm = nn.MultiLabelSoftMarginLoss(reduction='sum')

    def forward(self, outputs, targets, counts=None):
        counts = counts or batch_counts(targets)
        if self.setting == 'weak':
            return {self.term: self.msm(outputs['video_score'], targets['video_label'])
                    / counts['videos']}
        scores = torch.softmax(outputs['segment_logits'], -1).flatten(0, 1)   # (B T, C + 1)
        labels = F.one_hot(targets['segment'].flatten(), self.labels).to(scores.dtype)
        return {self.term: self.msm(scores, labels) / counts['segments']}


def build(args):
    return AVEL(**{k: v for k, v in args.items() if k != 'model'})


def build_criterion(cfg, setting, num_classes):
    key = 'segment_msm_weight' if setting == 'supervised' else 'video_msm_weight'
    return AVELCriterion(setting, num_classes, cfg[key])
