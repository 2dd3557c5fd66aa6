"""Heads of the two settings (DMIN section 6) and their shared segment prediction rule."""
import torch
from torch import nn

from dataset.layout import BACKGROUND, NUM_CLASSES


def predict_segments(relevance, category):
    """Segment t is argmax(category) where sigmoid(relevance_t) > 0.5, else background.

    relevance (B, T) logits, category (B, C) -> (B, T) int64 class indices.
    """
    cls = category.argmax(-1, keepdim=True).expand_as(relevance)
    return torch.where(relevance > 0, cls, torch.full_like(cls, BACKGROUND))


def segment_confidence(relevance, category):
    """Probability of the class predict_segments chose: P(event) * P(class) for an event
    segment, 1 - P(event) for background. (B, T) logits, (B, C) logits -> (B, T) in [0, 1]."""
    p_event = torch.sigmoid(relevance)
    p_class = torch.softmax(category, dim=-1).amax(-1, keepdim=True)
    return torch.where(relevance > 0, p_event * p_class, 1 - p_event)


class SupervisedHead(nn.Module):
    """Relevance per segment and one category per video, from the fused sequence; plus the
    unimodal discrimination (UDL) classifier on the visual encoder output."""

    def __init__(self, d_model=256):
        super().__init__()
        self.relevance = nn.Linear(d_model, 1)
        self.category = nn.Linear(d_model, NUM_CLASSES)
        self.udl = nn.Linear(d_model, NUM_CLASSES)

    def forward(self, fused, visual):
        # fused, visual (B, T, d)
        return {
            'relevance': self.relevance(fused).squeeze(-1),       # (B, T) logits
            'category': self.category(fused.amax(1)),             # (B, 28) logits
            'udl': self.udl(visual.amax(1)),                      # (B, 28) logits
        }


class MILBranch(nn.Module):
    """Multiple-instance scores: sigmoid(relevance_t) * class scores, max over time, softmax."""

    def __init__(self, d_model=256):
        super().__init__()
        self.relevance = nn.Linear(d_model, 1)
        self.category = nn.Linear(d_model, NUM_CLASSES + 1)

    def forward(self, x):
        # x (B, T, d)
        relevance = self.relevance(x).squeeze(-1)                 # (B, T)
        category = self.category(x.amax(1))                       # (B, 29)
        segment = torch.sigmoid(relevance).unsqueeze(-1) * category.unsqueeze(1)  # (B, T, 29)
        video = torch.softmax(segment.amax(1), dim=-1)            # (B, 29)
        return relevance, category, video


class WeakHead(nn.Module):
    """The MIL branch on the fused sequence and, for UDL, one on the visual encoder output."""

    def __init__(self, d_model=256):
        super().__init__()
        self.fused = MILBranch(d_model)
        self.visual = MILBranch(d_model)

    def forward(self, fused, visual):
        relevance, category, video = self.fused(fused)
        _, _, visual_video = self.visual(visual)
        return {'relevance': relevance, 'category': category,
                'video_score': video, 'visual_video_score': visual_video}
