"""AGTA: audio-guided triplet attention (docs/model.md, part 2).

Audio guides the 7x7 visual map over channels, space and time and pools it into one
visual vector per segment.
"""
import torch
from torch import nn
import torch.nn.functional as F

from model.attention import ChannelAttention
from model.bilstm import AudioGuidedBiLSTM
from model.dropout import FastCPUDropout, LinearReLUDropout, product_dropout, relu_linear


class SpatialMFB(nn.Module):
    """Multimodal factorized bilinear pooling of each visual position with the audio.

    Returns a (B, T, P, out_dim) code per position: the product of the two projections,
    summed over groups of `factor` consecutive channels, signed square root, L2 norm.
    """

    def __init__(self, audio_dim, visual_dim, out_dim, factor, dropout):
        super().__init__()
        self.factor = factor
        self.visual_proj = nn.Linear(visual_dim, out_dim * factor)
        self.audio_proj = nn.Linear(audio_dim, out_dim * factor)
        self.dropout = FastCPUDropout(dropout)           # per position: the cheap mask pays

    def forward(self, visual, audio):
        # visual (B, T, P, C), audio (B, T, A)
        v = relu_linear(visual, self.visual_proj)                 # (B, T, P, out*k)
        a = F.relu(self.audio_proj(audio)).unsqueeze(2)           # (B, T, 1, out*k)
        z = product_dropout(v, a, self.dropout)                   # dropout(v * a)
        z = z.unflatten(-1, (-1, self.factor)).sum(-1)            # (B, T, P, out)
        # Both factors are ReLU outputs, so z >= 0 and the signed root is a plain root.
        # relu() is the identity here; it makes the gradient at exactly 0 zero, not inf.
        z = torch.sqrt(F.relu(z))
        return F.normalize(z, dim=-1)


class TemporalAttention(nn.Module):
    """Per position, a 2-layer BiLSTM over the T segments of concat[pv + pa, pa].

    One LSTM serves all P positions: it runs as a single batch of B*P sequences. On the CPU
    the audio half of its first layer is computed once per segment (model/bilstm.py).
    """

    def __init__(self, audio_dim, visual_dim, hidden):
        super().__init__()
        self.visual_proj = nn.Linear(visual_dim, hidden)
        self.audio_proj = nn.Linear(audio_dim, hidden)
        self.lstm = AudioGuidedBiLSTM(2 * hidden, hidden // 2)

    def forward(self, visual, audio):
        # visual (B, T, P, C), audio (B, T, A)
        pv = relu_linear(visual, self.visual_proj).transpose(1, 2)  # (B, P, T, H)
        pa = F.relu(self.audio_proj(audio))                       # (B, T, H)
        return self.lstm(pv, pa).transpose(1, 2)                  # (B, T, P, H)


class AGTA(nn.Module):
    """Audio-guided triplet attention: (B, T, H, W, C) map + (B, T, A) audio -> (B, T, C)."""

    def __init__(self, audio_dim, visual_dim, hidden, mfb_factor, input_dropout, mfb_dropout):
        super().__init__()
        # ReLU and dropout after the per-position input layer, in one (model/dropout.py)
        self.visual_input = LinearReLUDropout(visual_dim, visual_dim, input_dropout)
        self.channel = ChannelAttention(audio_dim, visual_dim, hidden)
        self.spatial = SpatialMFB(audio_dim, visual_dim, hidden, mfb_factor, mfb_dropout)
        self.temporal = TemporalAttention(audio_dim, visual_dim, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, visual, audio):
        # visual (B, T, H, W, C), audio (B, T, A); P = H * W positions (7 x 7 in AVE)
        v = visual.flatten(2, 3)                                  # (B, T, P, C)
        v = self.visual_input(v)                                  # dropout(relu(linear(v)))
        v = self.channel(v, audio)                                # (B, T, P, C)
        code = self.temporal(v, audio) + self.spatial(v, audio)   # (B, T, P, H)
        weights = torch.softmax(torch.tanh(self.score(code)), dim=2)  # (B, T, P, 1)
        # The weighted sum over positions as one batched product (no (B, T, P, C) temporary).
        return (weights.transpose(2, 3) @ v).squeeze(2)           # (B, T, C)
