"""Heads of the two settings (docs/model.md, part 6) and their shared segment prediction rule;
CMRAN and CMBS use the same heads (without DMIN's UDL branch). AVEL and PSP score each
segment's labels directly (LabelsEachSegment).

C is the number of event classes (28 in AVE); class index C means background.
"""
import torch
from torch import nn


def predict_segments(relevance, category, background):
    """Segment t is argmax(category) where sigmoid(relevance_t) > 0.5, else `background`.

    relevance (B, T) logits, category (B, C) or (B, C + 1) logits -> (B, T) int64 classes.
    """
    cls = category.argmax(-1, keepdim=True).expand_as(relevance)
    return torch.where(relevance > 0, cls, torch.full_like(cls, background))


def segment_confidence(relevance, category):
    """Probability of the class predict_segments chose: P(event) * P(class) for an event
    segment, 1 - P(event) for background. (B, T) logits, (B, C) logits -> (B, T) in [0, 1]."""
    p_event = torch.sigmoid(relevance)
    p_class = torch.softmax(category, dim=-1).amax(-1, keepdim=True)
    return torch.where(relevance > 0, p_event * p_class, 1 - p_event)


class LabelsEachSegment:
    """predict and confidence of a model whose outputs['segment_logits'] (B, T, C + 1) score
    each segment's C + 1 labels (AVEL, PSP): the argmax, and its softmax probability."""

    @staticmethod
    def predict(outputs):
        return outputs['segment_logits'].argmax(-1)

    @staticmethod
    def confidence(outputs):
        return torch.softmax(outputs['segment_logits'], -1).amax(-1)


class SupervisedHead(nn.Module):
    """Relevance per segment and one category per video, from the fused sequence; plus,
    with `udl` (DMIN), the unimodal discrimination (UDL) classifier on the visual encoder
    output."""

    def __init__(self, d_model, num_classes, udl=True):
        super().__init__()
        self.relevance = nn.Linear(d_model, 1)
        self.category = nn.Linear(d_model, num_classes)
        self.udl = nn.Linear(d_model, num_classes) if udl else None

    def forward(self, fused, visual=None):
        # fused, visual (B, T, d)
        out = {'relevance': self.relevance(fused).squeeze(-1),    # (B, T) logits
               'category': self.category(fused.amax(1))}          # (B, C) logits
        if self.udl is not None:
            out['udl'] = self.udl(visual.amax(1))                 # (B, C) logits
        return out


class MILBranch(nn.Module):
    """Multiple-instance scores: sigmoid(relevance_t) * class scores, max over time, softmax.

    The class scores have C + 1 columns, the last one background."""

    def __init__(self, d_model, num_classes):
        super().__init__()
        self.relevance = nn.Linear(d_model, 1)
        self.category = nn.Linear(d_model, num_classes + 1)

    def forward(self, x):
        # x (B, T, d)
        relevance = self.relevance(x).squeeze(-1)                 # (B, T)
        category = self.category(x.amax(1))                       # (B, C + 1)
        segment = torch.sigmoid(relevance).unsqueeze(-1) * category.unsqueeze(1)  # (B, T, C + 1)
        video = torch.softmax(segment.amax(1), dim=-1)            # (B, C + 1)
        return relevance, category, video


class WeakHead(nn.Module):
    """The MIL branch on the fused sequence and, with `udl` (DMIN), one on the visual
    encoder output."""

    def __init__(self, d_model, num_classes, udl=True):
        super().__init__()
        self.fused = MILBranch(d_model, num_classes)
        self.visual = MILBranch(d_model, num_classes) if udl else None

    def forward(self, fused, visual=None):
        relevance, category, video = self.fused(fused)
        out = {'relevance': relevance, 'category': category, 'video_score': video}
        if self.visual is not None:
            out['visual_video_score'] = self.visual(visual)[2]
        return out
