"""DMIN: AGTA -> intra-modal encoders -> DIMA decoders -> fusion -> heads."""
from torch import nn

from dataset.layout import AUDIO_DIM, VISUAL_SHAPE
from model.agta import AGTA
from model.dima import DIMADecoderLayer
from model.encoder import IntraModalEncoder
from model.fusion import AudioVisualFusion
from model.heads import SupervisedHead, WeakHead, predict_segments, segment_confidence

SETTINGS = ('supervised', 'weak')
# Config keys that decide the architecture; a checkpoint only loads into the same values.
MODEL_KEYS = ('d_model', 'n_heads', 'ff_dim', 'encoder_layers', 'encoder_dropout',
              'agta_hidden', 'mfb_factor', 'visual_dropout', 'mfb_dropout',
              'dima_lambda', 'dima_dropout', 'fusion_heads', 'fusion_dropout')


class DMIN(nn.Module):
    """Dense Modality Interaction Network for one setting ('supervised' or 'weak').

    forward(audio (B, T, 128), visual (B, T, 7, 7, 512)) returns the head's dict of
    tensors; predict(outputs) turns it into (B, T) class indices (28 = background).
    """

    def __init__(self, setting='supervised', d_model=256, n_heads=4, ff_dim=2048,
                 encoder_layers=2, encoder_dropout=0.1, agta_hidden=256, mfb_factor=5,
                 visual_dropout=0.2, mfb_dropout=0.1, dima_lambda=0.5, dima_dropout=0.02,
                 fusion_heads=4, fusion_dropout=0.1):
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f'setting must be one of {SETTINGS}, got {setting!r}')
        self.setting = setting
        visual_dim = VISUAL_SHAPE[-1]
        self.agta = AGTA(AUDIO_DIM, visual_dim, agta_hidden, mfb_factor, visual_dropout,
                         mfb_dropout)
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_encoder = IntraModalEncoder(AUDIO_DIM, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_decoder = DIMADecoderLayer(visual_dim, d_model, n_heads, ff_dim,
                                               dima_dropout, dima_lambda)
        self.audio_decoder = DIMADecoderLayer(AUDIO_DIM, d_model, n_heads, ff_dim,
                                              dima_dropout, dima_lambda)
        self.fusion = AudioVisualFusion(d_model, fusion_heads, fusion_dropout)
        self.head = SupervisedHead(d_model) if setting == 'supervised' else WeakHead(d_model)

    def forward(self, audio, visual):
        # audio (B, T, 128), visual (B, T, 7, 7, 512)
        v = self.agta(visual, audio)                              # (B, T, 512)
        v_enc = self.visual_encoder(v)                            # (B, T, d)
        a_enc = self.audio_encoder(audio)                         # (B, T, d)
        v_dec = self.visual_decoder(v, a_enc)                     # (B, T, d)
        a_dec = self.audio_decoder(audio, v_enc)                  # (B, T, d)
        fused = self.fusion(v_dec, a_dec)                         # (B, T, d)
        return self.head(fused, v_enc)

    @staticmethod
    def predict(outputs):
        """(B, T) predicted class per segment, 28 = background."""
        return predict_segments(outputs['relevance'], outputs['category'])

    @staticmethod
    def confidence(outputs):
        """(B, T) probability of each predicted class (see heads.segment_confidence)."""
        return segment_confidence(outputs['relevance'], outputs['category'])


def build_model(cfg, setting):
    """The DMIN of `setting` with the architecture keys of config dict `cfg`."""
    return DMIN(setting, **{k: cfg[k] for k in MODEL_KEYS})


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
