"""CMRAN (Xu et al., "Cross-Modal Relation-Aware Networks for Audio-Visual Event
Localization", ACM MM 2020), as its authors' code builds it (docs/methods.md). DMIN grew
out of it, so it is made of DMIN's parts:

visual input layer -> audio-guided channel and spatial attention -> an intra-modal encoder
per modality -> cross-modal relation attention per modality (DIMA's layer with ordinary
scaled dot products: the query attends over the other modality's encoded segments and its
own) -> the audio-visual interaction -> the heads of DMIN without its UDL branch:
relevance per segment and one category per video (weakly supervised: the MIL branch).
"""
from torch import nn
import torch.nn.functional as F

from model.attention import ChannelAttention, SpatialAttention
from model.criterion import SupervisedCriterion, WeakCriterion
from model.dima import DIMADecoderLayer
from model.encoder import IntraModalEncoder
from model.fusion import AudioVisualFusion
from model.heads import SupervisedHead, WeakHead, predict_segments, segment_confidence

NAME = 'CMRAN'
SETTINGS = ('supervised', 'weak')
MODEL_KEYS = ('d_model', 'n_heads', 'ff_dim', 'encoder_layers', 'encoder_dropout',
              'attention_hidden', 'visual_dropout', 'decoder_dropout', 'fusion_heads',
              'fusion_dropout')


class AudioGuidedSpatialChannelAttention(nn.Module):
    """(B, T, P, V) map + (B, T, A) audio -> (B, T, V): channel attention, then spatial."""

    def __init__(self, audio_dim, visual_dim, hidden):
        super().__init__()
        self.channel = ChannelAttention(audio_dim, visual_dim, hidden)
        self.spatial = SpatialAttention(audio_dim, visual_dim, hidden)

    def forward(self, visual, audio):
        return self.spatial(self.channel(visual, audio), audio)


class CMRAN(nn.Module):
    """forward(audio (B, T, A), visual (B, T, H, W, V)) -> the head's dict (DMIN's keys)."""

    def __init__(self, *, setting, num_classes, audio_dim, visual_dim, positions, d_model,
                 n_heads, ff_dim, encoder_layers, encoder_dropout, attention_hidden,
                 visual_dropout, decoder_dropout, fusion_heads, fusion_dropout):
        super().__init__()
        self.setting, self.num_classes = setting, num_classes
        self.visual_input = nn.Linear(visual_dim, visual_dim)
        self.input_dropout = nn.Dropout(visual_dropout)
        self.attention = AudioGuidedSpatialChannelAttention(audio_dim, visual_dim,
                                                            attention_hidden)
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_encoder = IntraModalEncoder(audio_dim, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_decoder = DIMADecoderLayer(visual_dim, d_model, n_heads, ff_dim,
                                               decoder_dropout, lam=None)
        self.audio_decoder = DIMADecoderLayer(audio_dim, d_model, n_heads, ff_dim,
                                              decoder_dropout, lam=None)
        self.fusion = AudioVisualFusion(d_model, fusion_heads, fusion_dropout)
        head = SupervisedHead if setting == 'supervised' else WeakHead
        self.head = head(d_model, num_classes, udl=False)

    def forward(self, audio, visual):
        # audio (B, T, A), visual (B, T, H, W, V)
        v = self.input_dropout(F.relu(self.visual_input(visual.flatten(2, 3))))  # (B, T, P, V)
        v = self.attention(v, audio)                              # (B, T, V)
        v_enc = self.visual_encoder(v)                            # (B, T, d)
        a_enc = self.audio_encoder(audio)                         # (B, T, d)
        v_dec = self.visual_decoder(v, a_enc)                     # (B, T, d)
        a_dec = self.audio_decoder(audio, v_enc)                  # (B, T, d)
        return self.head(self.fusion(v_dec, a_dec))

    def predict(self, outputs):
        """(B, T) predicted class per segment; num_classes = background."""
        return predict_segments(outputs['relevance'], outputs['category'], self.num_classes)

    @staticmethod
    def confidence(outputs):
        return segment_confidence(outputs['relevance'], outputs['category'])


def build(args):
    return CMRAN(**{k: v for k, v in args.items() if k != 'model'})


def build_criterion(cfg, setting, num_classes):
    """Event BCE and class CE (supervised), the fused MIL loss (weak)."""
    if setting == 'supervised':
        return SupervisedCriterion(num_classes, cfg['event_bce_weight'], cfg['class_ce_weight'])
    return WeakCriterion(cfg['mil_fused_weight'])
