"""DMIN's losses of the two settings as named terms with weights (docs/model.md, part 6),
and what every method's criterion shares: the counts terms are divided by, the class
cross-entropy that leaves out videos without a class, the weighted total.

Each criterion returns {term: loss}; `weight_dict` holds each term's weight, so the total
is sum(weight * term) and every term can be logged on its own.

Every term is a sum over the batch's videos (or segments) divided by a count: by default
the batch's own, and under torchrun the whole global batch's (`batch_counts` of all its
targets), so that the ranks' terms add up to the loss one process would compute.
"""
from torch import nn
import torch.nn.functional as F

NO_CLASS = -1   # video_class of a video without event segments (row 26 of the AVE release)


def batch_counts(targets):
    """What the terms are divided by: videos, segments and videos with a class (at least 1,
    so that a batch of only class-less videos gives 0 rather than NaN)."""
    segment = targets['segment']                                                   # (B, T)
    return {'videos': segment.shape[0], 'segments': segment.numel(),
            'classed': (targets['video_class'] != NO_CLASS).sum().clamp_min(1)}


def event_mask(targets, background, dtype):
    """(B, T) 1 where a segment is an event (its class is not `background`), else 0."""
    return (targets['segment'] != background).to(dtype)


def class_cross_entropy(logits, target, classed):
    """Cross-entropy summed over the videos that have a class, over `classed`; a video
    without one (NO_CLASS) contributes nothing."""
    return F.cross_entropy(logits, target, ignore_index=NO_CLASS, reduction='sum') / classed


class SupervisedCriterion(nn.Module):
    """event_bce: is segment t an event; class_ce: the video's class from the fused branch;
    udl_ce (DMIN; None: no such term): the same class from the visual encoder alone
    (unimodal discrimination loss)."""

    def __init__(self, num_classes, event_bce, class_ce, udl_ce=None):
        super().__init__()
        self.background = num_classes
        self.weight_dict = {'event_bce': event_bce, 'class_ce': class_ce}
        if udl_ce is not None:
            self.weight_dict['udl_ce'] = udl_ce

    def forward(self, outputs, targets, counts=None):
        counts = counts or batch_counts(targets)
        is_event = event_mask(targets, self.background, outputs['relevance'].dtype)       # (B, T)
        video_class = targets['video_class']                                              # (B,)
        bce = F.binary_cross_entropy_with_logits(outputs['relevance'], is_event, reduction='sum')
        terms = {
            'event_bce': bce / counts['segments'],
            'class_ce': class_cross_entropy(outputs['category'], video_class, counts['classed']),
        }
        if 'udl_ce' in self.weight_dict:
            terms['udl_ce'] = class_cross_entropy(outputs['udl'], video_class, counts['classed'])
        return terms


class WeakCriterion(nn.Module):
    """Multiple-instance losses on the video label: fused branch and, with `mil_visual`
    (DMIN; None: no such term), the visual (UDL) branch.

    As in the releases, MultiLabelSoftMarginLoss is applied to the softmax video scores.
    """

    def __init__(self, mil_fused, mil_visual=None):
        super().__init__()
        self.weight_dict = {'mil_fused': mil_fused}
        if mil_visual is not None:
            self.weight_dict['mil_visual'] = mil_visual
        self.mil = nn.MultiLabelSoftMarginLoss(reduction='sum')

    def forward(self, outputs, targets, counts=None):
        label = targets['video_label']                                               # (B, C + 1)
        videos = counts['videos'] if counts else label.shape[0]
        terms = {'mil_fused': self.mil(outputs['video_score'], label) / videos}
        if 'mil_visual' in self.weight_dict:
            terms['mil_visual'] = self.mil(outputs['visual_video_score'], label) / videos
        return terms


def total_loss(terms, weight_dict):
    return sum(weight_dict[k] * v for k, v in terms.items())
