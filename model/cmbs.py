"""CMBS (Xia and Zhao, "Cross-Modal Background Suppression for Audio-Visual Event
Localization", CVPR 2022), as its authors' code builds it (docs/methods.md): CMRAN's
backbone with background suppressed at two levels.

- Attention: the visual map attends to itself over its positions (a spatial
  self-attention), a pooling guided by that map's mean gives F_self, CMRAN's audio-guided
  channel attention (its weights from the self-attended map, applied to the map) and
  spatial attention give F; the output is F + beta * sigmoid(F_self) * F.
- Fully supervised, a BiLSTM per modality (the audio one on the raw audio) before the
  encoders and cross-modal relation attention of CMRAN.
- Time level: a gate per segment from each modality's encoder output, g = sigmoid(Linear);
  fully supervised each branch is scaled by 1 + alpha g of the other modality (g_a g_v is
  trained as the segment's event probability), weakly by (1 - alpha) + alpha g of its own.
- Event level: class activation sequences Linear(branch) per segment; fully supervised,
  each class's mean over its top-k segments (the mean of both modalities) is added
  (times gamma) to the video's class scores and trained as class scores itself; weakly
  they gate the fused sequence's activation sequence.
- Fusion: the audio-visual interaction of CMRAN twice (visual with audio, then audio with
  the new visual), and the mean of the two branches.
Fully supervised, the heads and the prediction rule are CMRAN's. Weakly supervised, each
class's top-k mean over time of the gated activation sequence, times the mean gate per
segment, max over time and softmax gives the video's label scores, and (as the authors'
evaluation does) every segment is the argmax of the top-k means.
"""
import torch
from torch import nn
import torch.nn.functional as F

from core.errors import UserError
from model.attention import ChannelAttention, SpatialAttention
from model.criterion import (SupervisedCriterion, WeakCriterion, batch_counts,
                             class_cross_entropy, event_mask)
from model.dima import DIMADecoderLayer
from model.encoder import IntraModalEncoder
from model.fusion import AudioVisualFusion
from model.heads import SupervisedHead, predict_segments, segment_confidence

NAME = 'CMBS'
SETTINGS = ('supervised', 'weak')
_KEYS = ('d_model', 'n_heads', 'ff_dim', 'decoder_ff_dim', 'encoder_layers', 'encoder_dropout',
         'attention_hidden', 'attention_dropout', 'visual_dropout', 'decoder_dropout',
         'fusion_heads', 'fusion_dropout', 'cmbs_alpha', 'cmbs_beta', 'cmbs_gamma', 'cmbs_topk')
# The BiLSTMs are the fully supervised model's only.
MODEL_KEYS = {'supervised': _KEYS + ('audio_lstm_hidden', 'visual_lstm_hidden'), 'weak': _KEYS}


class SpatialSelfAttention(nn.Module):
    """The map attending to itself over its positions: softmax(q k^T) (no scaling, as in the
    authors' code) over values, residual, LayerNorm. (B, T, P, V) -> (B, T, P, V)."""

    def __init__(self, dim, key_dim, dropout):
        super().__init__()
        self.query, self.key = nn.Linear(dim, key_dim), nn.Linear(dim, key_dim)
        self.value = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        weights = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2), dim=-1)
        return self.norm(x + self.dropout(weights @ self.value(x)))


class BackgroundSuppressingAttention(nn.Module):
    """(B, T, P, V) map + (B, T, A) audio -> (B, T, V), as the module's docstring says."""

    def __init__(self, audio_dim, visual_dim, hidden, dropout, beta):
        super().__init__()
        self.beta = beta
        self.self_attention = SpatialSelfAttention(visual_dim, visual_dim // 4, dropout)
        self.self_pooling = SpatialAttention(visual_dim, visual_dim, hidden)
        self.channel = ChannelAttention(audio_dim, visual_dim, hidden)
        self.spatial = SpatialAttention(audio_dim, visual_dim, hidden)

    def forward(self, visual, audio):
        attended = self.self_attention(visual)                        # (B, T, P, V)
        f_self = self.self_pooling(attended, attended.mean(2))        # (B, T, V)
        f = self.spatial(self.channel(visual, audio, guide=attended), audio)
        return f + self.beta * torch.sigmoid(f_self) * f


def top_k_mean(scores, k):
    """(B, T, C) -> (B, C): each column's mean over its k largest segments."""
    return scores.topk(min(k, scores.shape[1]), dim=1).values.mean(1)


class CMBS(nn.Module):
    """forward(audio (B, T, A), visual (B, T, H, W, V)) -> fully supervised {'relevance',
    'category', 'gate': (B, T) event probability, 'activation_score': (B, C)}; weakly
    {'relevance': (B, T) mean gate, 'category': (B, C + 1) top-k means, 'video_score'}."""

    def __init__(self, *, setting, num_classes, audio_dim, visual_dim, positions, d_model,
                 n_heads, ff_dim, decoder_ff_dim, encoder_layers, encoder_dropout,
                 attention_hidden, attention_dropout, visual_dropout, decoder_dropout,
                 fusion_heads, fusion_dropout, cmbs_alpha, cmbs_beta, cmbs_gamma, cmbs_topk,
                 audio_lstm_hidden=None, visual_lstm_hidden=None):
        super().__init__()
        self.setting, self.num_classes = setting, num_classes
        self.alpha, self.gamma, self.topk = cmbs_alpha, cmbs_gamma, cmbs_topk
        full = setting == 'supervised'
        self.visual_input = nn.Linear(visual_dim, visual_dim)
        self.input_dropout = nn.Dropout(visual_dropout)
        self.attention = BackgroundSuppressingAttention(audio_dim, visual_dim, attention_hidden,
                                                        attention_dropout, cmbs_beta)
        if full:   # BiLSTMs before the encoders (the audio one on the raw audio)
            self.audio_lstm = nn.LSTM(audio_dim, audio_lstm_hidden, batch_first=True,
                                      bidirectional=True)
            self.visual_lstm = nn.LSTM(visual_dim, visual_lstm_hidden, batch_first=True,
                                       bidirectional=True)
            audio_dim, visual_dim = 2 * audio_lstm_hidden, 2 * visual_lstm_hidden
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_encoder = IntraModalEncoder(audio_dim, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_decoder = DIMADecoderLayer(visual_dim, d_model, n_heads, decoder_ff_dim,
                                               decoder_dropout, lam=None)
        self.audio_decoder = DIMADecoderLayer(audio_dim, d_model, n_heads, decoder_ff_dim,
                                              decoder_dropout, lam=None)
        self.audio_gate, self.visual_gate = nn.Linear(d_model, 1), nn.Linear(d_model, 1)
        classes = num_classes if full else num_classes + 1
        self.visual_activation = nn.Linear(d_model, classes)
        self.audio_activation = nn.Linear(d_model, classes)
        self.visual_fusion = AudioVisualFusion(d_model, fusion_heads, fusion_dropout)
        self.audio_fusion = AudioVisualFusion(d_model, fusion_heads, fusion_dropout)
        if full:
            self.head = SupervisedHead(d_model, num_classes, udl=False)
        else:
            self.activation = nn.Linear(d_model, classes, bias=False)

    def forward(self, audio, visual):
        # audio (B, T, A), visual (B, T, H, W, V)
        v = self.input_dropout(F.relu(self.visual_input(visual.flatten(2, 3))))  # (B, T, P, V)
        v = self.attention(v, audio)                              # (B, T, V)
        a = audio
        if self.setting == 'supervised':
            a, _ = self.audio_lstm(audio)                         # (B, T, 2h_a)
            v, _ = self.visual_lstm(v)                            # (B, T, 2h_v)
        v_enc, a_enc = self.visual_encoder(v), self.audio_encoder(a)     # (B, T, d)
        v_dec = self.visual_decoder(v, a_enc)                     # (B, T, d)
        a_dec = self.audio_decoder(a, v_enc)                      # (B, T, d)
        g_a = torch.sigmoid(self.audio_gate(a_enc))               # (B, T, 1)
        g_v = torch.sigmoid(self.visual_gate(v_enc))              # (B, T, 1)
        if self.setting == 'supervised':   # each branch scaled by the other modality's gate
            v_dec, a_dec = v_dec * (1 + self.alpha * g_a), a_dec * (1 + self.alpha * g_v)
        else:                              # each by its own modality's
            v_dec = v_dec * (1 - self.alpha + self.alpha * g_v)
            a_dec = a_dec * (1 - self.alpha + self.alpha * g_a)
        cas_v, cas_a = self.visual_activation(v_dec), self.audio_activation(a_dec)   # (B, T, C')
        v_dec = self.visual_fusion(v_dec, a_dec)
        a_dec = self.audio_fusion(a_dec, v_dec)
        fused = 0.5 * (v_dec + a_dec)                             # (B, T, d)
        if self.setting == 'supervised':
            score = 0.5 * (top_k_mean(cas_v, self.topk) + top_k_mean(cas_a, self.topk))
            out = self.head(fused)
            out['category'] = out['category'] + self.gamma * score     # (B, C)
            out.update(gate=(g_a * g_v).squeeze(-1), activation_score=score)
            return out
        cas = self.activation(fused)                              # (B, T, C + 1)
        cas = self.gamma * (torch.sigmoid(cas_v) + torch.sigmoid(cas_a)) * cas
        category = top_k_mean(cas, self.topk)                     # (B, C + 1)
        gate = 0.5 * (g_a + g_v)                                  # (B, T, 1)
        video = torch.softmax((gate * category.unsqueeze(1)).amax(1), dim=-1)
        return {'relevance': gate.squeeze(-1), 'category': category, 'video_score': video}

    def predict(self, outputs):
        """(B, T) predicted class per segment; num_classes = background. Weakly supervised
        the relevance is a probability in (0, 1), so, as in the authors' evaluation (which
        takes it for a logit), every segment is an event of the argmax class."""
        return predict_segments(outputs['relevance'], outputs['category'], self.num_classes)

    @staticmethod
    def confidence(outputs):
        return segment_confidence(outputs['relevance'], outputs['category'])


class CMBSCriterion(nn.Module):
    """Fully supervised: CMRAN's event_bce and class_ce, gate_bce (the gate product against
    the event mask; as in the authors' code, it goes through BCE-with-logits although it is
    a probability) and activation_ce (the top-k class scores against the video class).
    Weakly supervised: the fused MIL loss."""

    def __init__(self, setting, num_classes, weights):
        super().__init__()
        self.setting, self.background = setting, num_classes
        self.base = (SupervisedCriterion(num_classes, weights['event_bce'], weights['class_ce'])
                     if setting == 'supervised' else WeakCriterion(weights['mil_fused']))
        self.weight_dict = dict(weights)

    def forward(self, outputs, targets, counts=None):
        terms = self.base(outputs, targets, counts)
        if self.setting == 'weak':
            return terms
        counts = counts or batch_counts(targets)
        is_event = event_mask(targets, self.background, outputs['gate'].dtype)
        gate = F.binary_cross_entropy_with_logits(outputs['gate'], is_event, reduction='sum')
        terms['gate_bce'] = gate / counts['segments']
        terms['activation_ce'] = class_cross_entropy(outputs['activation_score'],
                                                     targets['video_class'], counts['classed'])
        return terms


def check(cfg, spec):
    """Refuse a top-k longer than the data's videos."""
    if cfg['cmbs_topk'] > spec.num_segments:
        raise UserError(f"--cmbs_topk {cfg['cmbs_topk']} is invalid: these data have "
                        f'{spec.num_segments} segments per video; choose at most that')


def build(args):
    return CMBS(**{k: v for k, v in args.items() if k != 'model'})


def build_criterion(cfg, setting, num_classes):
    terms = (('event_bce', 'class_ce', 'gate_bce', 'activation_ce') if setting == 'supervised'
             else ('mil_fused',))
    return CMBSCriterion(setting, num_classes, {t: cfg[f'{t}_weight'] for t in terms})
