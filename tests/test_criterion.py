"""model/criterion.py: the losses of both settings, as numbers worked out by hand for a tiny
batch, weighted by the config's weights."""
import math

import pytest
import torch

from engine.config import parse_config
from model import build_criterion
from model.criterion import (SupervisedCriterion, WeakCriterion, batch_counts,
                             class_cross_entropy, total_loss)

C = 2   # two event classes; label 2 is background


def log_softmax(logits):
    return [x - math.log(sum(math.exp(y) for y in logits)) for x in logits]


def bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_supervised_terms_of_a_hand_made_batch():
    """Two videos of two segments: video 0 is class 1 with its second segment an event,
    video 1 has no event (no class)."""
    outputs = {'relevance': torch.tensor([[0.5, 2.0], [-1.0, 0.0]]),
               'category': torch.tensor([[0.2, 1.2], [3.0, -3.0]]),
               'udl': torch.tensor([[1.0, -1.0], [0.0, 0.0]])}
    targets = {'segment': torch.tensor([[2, 1], [2, 2]]), 'video_class': torch.tensor([1, -1])}
    terms = SupervisedCriterion(C, 1.0, 0.9, 0.1)(outputs, targets)
    events = [(0.5, 0), (2.0, 1), (-1.0, 0), (0.0, 0)]
    assert terms['event_bce'].item() == pytest.approx(sum(bce(x, t) for x, t in events) / 4)
    # Only video 0 has a class: the class terms are its cross-entropy alone (over 1 video).
    assert terms['class_ce'].item() == pytest.approx(-log_softmax([0.2, 1.2])[1], rel=1e-6)
    assert terms['udl_ce'].item() == pytest.approx(-log_softmax([1.0, -1.0])[1], rel=1e-6)


def test_weak_terms_are_multilabel_soft_margin_on_the_softmax_scores():
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])         # (B, C + 1), softmax
    visual = torch.tensor([[0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    label = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    terms = WeakCriterion(0.92, 0.08)({'video_score': scores, 'visual_video_score': visual},
                                      {'video_label': label})

    def margin(x, y):   # the mean over the C + 1 columns of the per-column logistic loss
        return sum(-(t * math.log(1 / (1 + math.exp(-v))) + (1 - t) * math.log(
            1 - 1 / (1 + math.exp(-v)))) for v, t in zip(x, y)) / len(x)

    for name, x in (('mil_fused', scores), ('mil_visual', visual)):
        expected = sum(margin(a.tolist(), b.tolist()) for a, b in zip(x, label)) / 2
        assert terms[name].item() == pytest.approx(expected, rel=1e-6)


def test_class_loss_leaves_out_videos_without_a_class():
    logits = torch.randn(3, 28)
    segment = torch.zeros(3, 10, dtype=torch.long)
    classes = torch.tensor([4, -1, 7])
    counts = batch_counts({'segment': segment, 'video_class': classes})
    assert counts['videos'] == 3 and counts['segments'] == 30 and counts['classed'] == 2
    both = class_cross_entropy(logits, classes, counts['classed'])
    torch.testing.assert_close(both, torch.nn.functional.cross_entropy(logits[[0, 2]],
                                                                       torch.tensor([4, 7])))
    none = torch.full((3,), -1)
    classed = batch_counts({'segment': segment, 'video_class': none})['classed']
    assert class_cross_entropy(logits, none, classed).item() == 0.0   # not NaN


@pytest.mark.parametrize('setting, flags, weights', [
    ('supervised', ['--class_ce_weight', '0.3', '--udl_ce_weight', '0.7'],
     {'event_bce': 1.0, 'class_ce': 0.3, 'udl_ce': 0.7}),
    ('weak', ['--mil_visual_weight', '0.25'], {'mil_fused': 0.92, 'mil_visual': 0.25}),
])
def test_the_config_s_weights_reach_the_criterion_and_the_total(setting, flags, weights):
    cfg = parse_config(setting, flags)[0]
    criterion = build_criterion(cfg, setting, C)
    assert criterion.weight_dict == weights
    terms = {name: torch.tensor(float(i + 1)) for i, name in enumerate(weights)}
    assert total_loss(terms, criterion.weight_dict).item() == pytest.approx(
        sum(w * (i + 1) for i, w in enumerate(weights.values())))
