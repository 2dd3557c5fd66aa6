"""Audio-guided attention over the visual map: the parts the methods share.

The visual map of a segment is P positions (7 x 7 in AVE) of V channels; the audio of the
same segment guides which channels and positions count.

- ChannelAttention (CMRAN, CMBS, DMIN's AGTA): a weight per channel from the audio and
  the map; the map becomes v * (1 + w).
- SpatialAttention (CMRAN, CMBS): a softmax over positions of tanh(Linear(projected map *
  projected audio)), pooling the map into one vector per segment.
- AudioGuidedVisualAttention (AVEL's, which PSP takes over as AVGA): additive attention
  over the positions, pooling the raw map.
"""
import torch
from torch import nn
import torch.nn.functional as F

from model.dropout import relu_linear


class ChannelAttention(nn.Module):
    """Audio-guided channel weights w; returns the channel-attended map v * (1 + w)."""

    def __init__(self, audio_dim, visual_dim, hidden):
        super().__init__()
        self.audio_proj = nn.Linear(audio_dim, visual_dim)
        self.visual_proj = nn.Linear(visual_dim, visual_dim)
        self.squeeze = nn.Linear(visual_dim, hidden)
        self.excite = nn.Linear(hidden, visual_dim)

    def forward(self, visual, audio, guide=None):
        # visual (B, T, P, C), audio (B, T, A); the weights come from `guide` (another map of
        # the same shape, CMBS's self-attended one) where given, else from `visual`.
        guide = visual if guide is None else guide
        a = F.relu(self.audio_proj(audio))                        # (B, T, C)
        # mean_P(pv * a) with a constant over the positions: a * mean_P(pv), one product less.
        joint = relu_linear(guide, self.visual_proj).mean(2) * a  # (B, T, C)
        w = torch.sigmoid(self.excite(F.relu(self.squeeze(joint))))
        return visual * (1 + w.unsqueeze(2))                     # (B, T, P, C)


class SpatialAttention(nn.Module):
    """Audio-guided weights over the positions; returns the weighted sum of the map."""

    def __init__(self, audio_dim, visual_dim, hidden):
        super().__init__()
        self.visual_proj = nn.Linear(visual_dim, hidden)
        self.audio_proj = nn.Linear(audio_dim, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, visual, audio):
        # visual (B, T, P, C); audio (B, T, A): the sound, or another guide (CMBS: the map's mean)
        v = F.relu(self.visual_proj(visual))                      # (B, T, P, H)
        a = F.relu(self.audio_proj(audio)).unsqueeze(2)           # (B, T, 1, H)
        weights = torch.softmax(torch.tanh(self.score(v * a)), dim=2)   # (B, T, P, 1)
        return (weights.transpose(2, 3) @ visual).squeeze(2)      # (B, T, C)


class AudioGuidedVisualAttention(nn.Module):
    """AVEL's audio-guided visual attention: z_k = w . tanh(W_v v'_k + g_k), softmax over the
    P positions k, and the weighted sum of the raw map.

    v' = ReLU(Linear(v)) and a' = ReLU(Linear(a)) are `hidden` wide; W_v and the audio's
    W_g map them to P values without bias. As in the authors' code, the audio's P values
    are added along the positions, g_k to every one of position k's P values (so the layer
    is built for maps of exactly `positions` positions)."""

    def __init__(self, audio_dim, visual_dim, hidden, positions, xavier=True):
        super().__init__()
        self.positions = positions
        self.audio_proj = nn.Linear(audio_dim, hidden)
        self.visual_proj = nn.Linear(visual_dim, hidden)
        self.visual_att = nn.Linear(hidden, positions, bias=False)
        self.audio_att = nn.Linear(hidden, positions, bias=False)
        self.score = nn.Linear(positions, 1, bias=False)
        for layer in (self.audio_proj, self.visual_proj, self.visual_att, self.audio_att,
                      self.score) if xavier else ():   # the authors' initialisation
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, visual, audio):
        # visual (B, T, P, C), audio (B, T, A)
        if visual.shape[2] != self.positions:
            raise ValueError(f'built for maps of {self.positions} positions, got {visual.shape[2]}')
        content = self.visual_att(F.relu(self.visual_proj(visual)))           # (B, T, P, P)
        g = self.audio_att(F.relu(self.audio_proj(audio))).unsqueeze(-1)      # (B, T, P, 1)
        weights = torch.softmax(self.score(torch.tanh(content + g)), dim=2)  # (B, T, P, 1)
        return (weights.transpose(2, 3) @ visual).squeeze(2)                 # (B, T, C)
