"""DMIN: AGTA -> intra-modal encoders -> DIMA decoders -> fusion -> heads."""
from torch import nn

from model.agta import AGTA
from model.criterion import SupervisedCriterion, WeakCriterion
from model.dima import DIMADecoderLayer
from model.encoder import IntraModalEncoder
from model.fusion import AudioVisualFusion
from model.heads import SupervisedHead, WeakHead, predict_segments, segment_confidence

SETTINGS = ('supervised', 'weak')
# The config keys DMIN is built from (configs/base.yaml and the setting's file). Together
# with the setting and the data's sizes they are a checkpoint's `model_args`, from which
# evaluation, resume and predict rebuild the model.
MODEL_KEYS = ('d_model', 'n_heads', 'ff_dim', 'encoder_layers', 'encoder_dropout',
              'agta_hidden', 'mfb_factor', 'visual_dropout', 'mfb_dropout',
              'dima_lambda', 'dima_dropout', 'fusion_heads', 'fusion_dropout')


class DMIN(nn.Module):
    """Dense Modality Interaction Network for one setting ('supervised' or 'weak').

    forward(audio (B, T, A), visual (B, T, H, W, V)) returns the head's dict of tensors;
    predict(outputs) turns it into (B, T) class indices, num_classes meaning background.
    Every size is an argument; build_model(model_args) passes them all.
    """

    def __init__(self, *, setting, num_classes, audio_dim, visual_dim, d_model, n_heads, ff_dim,
                 encoder_layers, encoder_dropout, agta_hidden, mfb_factor, visual_dropout,
                 mfb_dropout, dima_lambda, dima_dropout, fusion_heads, fusion_dropout):
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f'setting must be one of {SETTINGS}, got {setting!r}')
        self.setting = setting
        self.num_classes = num_classes
        self.agta = AGTA(audio_dim, visual_dim, agta_hidden, mfb_factor, visual_dropout,
                         mfb_dropout)
        self.visual_encoder = IntraModalEncoder(visual_dim, d_model, n_heads, ff_dim,
                                                encoder_layers, encoder_dropout)
        self.audio_encoder = IntraModalEncoder(audio_dim, d_model, n_heads, ff_dim,
                                               encoder_layers, encoder_dropout)
        self.visual_decoder = DIMADecoderLayer(visual_dim, d_model, n_heads, ff_dim,
                                               dima_dropout, dima_lambda)
        self.audio_decoder = DIMADecoderLayer(audio_dim, d_model, n_heads, ff_dim,
                                              dima_dropout, dima_lambda)
        self.fusion = AudioVisualFusion(d_model, fusion_heads, fusion_dropout)
        head = SupervisedHead if setting == 'supervised' else WeakHead
        self.head = head(d_model, num_classes)

    def forward(self, audio, visual):
        # audio (B, T, A), visual (B, T, H, W, V)
        v = self.agta(visual, audio)                              # (B, T, V)
        v_enc = self.visual_encoder(v)                            # (B, T, d)
        a_enc = self.audio_encoder(audio)                         # (B, T, d)
        v_dec = self.visual_decoder(v, a_enc)                     # (B, T, d)
        a_dec = self.audio_decoder(audio, v_enc)                  # (B, T, d)
        fused = self.fusion(v_dec, a_dec)                         # (B, T, d)
        return self.head(fused, v_enc)

    def predict(self, outputs):
        """(B, T) predicted class per segment; num_classes = background."""
        return predict_segments(outputs['relevance'], outputs['category'], self.num_classes)

    @staticmethod
    def confidence(outputs):
        """(B, T) probability of each predicted class (see heads.segment_confidence)."""
        return segment_confidence(outputs['relevance'], outputs['category'])


NAME = 'DMIN'


def build(args):
    """DMIN for a dict made by model.model_args (or read from a checkpoint)."""
    return DMIN(**{k: v for k, v in args.items() if k not in ('model', 'positions')})


def build_criterion(cfg, setting, num_classes):
    """DMIN's criterion of `setting`, weighted by the config's `*_weight` keys."""
    if setting == 'supervised':
        return SupervisedCriterion(num_classes, cfg['event_bce_weight'], cfg['class_ce_weight'],
                                   cfg['udl_ce_weight'])
    return WeakCriterion(cfg['mil_fused_weight'], cfg['mil_visual_weight'])
