"""Losses of the two settings as named terms with weights (DMIN section 6).

Each criterion returns {term: loss}; `weight_dict` holds each term's weight, so the total
is sum(weight * term) and every term can be logged on its own.
"""
import torch
from torch import nn
import torch.nn.functional as F

from dataset.layout import BACKGROUND


def masked_cross_entropy(logits, target):
    """Mean cross-entropy over videos with a class (target >= 0); 0 if there are none.

    A video whose segments are all background (row 26 of the real set) has no event class
    and contributes nothing, instead of an arbitrary one.
    """
    losses = F.cross_entropy(logits, target.clamp_min(0), reduction='none')
    valid = (target >= 0).to(losses.dtype)
    return (losses * valid).sum() / valid.sum().clamp_min(1)


class SupervisedCriterion(nn.Module):
    """event_bce: is segment t an event; class_ce: the video's class from the fused branch;
    udl_ce: the same class from the visual encoder alone (unimodal discrimination loss)."""

    def __init__(self, event_bce=1.0, class_ce=0.9, udl_ce=0.1):
        super().__init__()
        self.weight_dict = {'event_bce': event_bce, 'class_ce': class_ce, 'udl_ce': udl_ce}

    def forward(self, outputs, targets):
        is_event = (targets['segment'] != BACKGROUND).to(outputs['relevance'].dtype)  # (B, T)
        video_class = targets['video_class']                                         # (B,)
        return {
            'event_bce': F.binary_cross_entropy_with_logits(outputs['relevance'], is_event),
            'class_ce': masked_cross_entropy(outputs['category'], video_class),
            'udl_ce': masked_cross_entropy(outputs['udl'], video_class),
        }


class WeakCriterion(nn.Module):
    """Multiple-instance losses on the video label: fused branch and visual (UDL) branch.

    As in the release, MultiLabelSoftMarginLoss is applied to the softmax video scores.
    """

    def __init__(self, mil_fused=0.92, mil_visual=0.08):
        super().__init__()
        self.weight_dict = {'mil_fused': mil_fused, 'mil_visual': mil_visual}
        self.mil = nn.MultiLabelSoftMarginLoss()

    def forward(self, outputs, targets):
        label = targets['video_label']                                               # (B, 29)
        return {'mil_fused': self.mil(outputs['video_score'], label),
                'mil_visual': self.mil(outputs['visual_video_score'], label)}


def build_criterion(cfg, setting):
    """The criterion of `setting`, weighted by the config's `*_weight` keys."""
    if setting == 'supervised':
        return SupervisedCriterion(cfg['event_bce_weight'], cfg['class_ce_weight'],
                                   cfg['udl_ce_weight'])
    return WeakCriterion(cfg['mil_fused_weight'], cfg['mil_visual_weight'])


def total_loss(terms, weight_dict):
    return sum(weight_dict[k] * v for k, v in terms.items())
