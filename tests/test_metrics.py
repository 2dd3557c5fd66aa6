"""reports.metrics: confusion matrix, per-class accuracy, event detection and events, by hand."""
import pytest
import torch

from tests.helpers import BACKGROUND, LABEL_NAMES
from reports.metrics import (confusion_matrix, event_detection, merge_events, per_class_accuracy,
                           report, report_markdown)

B = BACKGROUND
# Two videos of 5 segments. Video 0: class 3 in segments 1-3; video 1: class 7 throughout.
LABELS = torch.tensor([[B, 3, 3, 3, B],
                       [7, 7, 7, 7, 7]])
PREDS = torch.tensor([[B, 3, 3, 5, 3],     # 2 of 3 class-3 segments right, one FP event
                      [7, 7, B, 7, 5]])    # 3 of 5 class-7 right, one missed event


def test_confusion_matrix_counts_true_against_predicted():
    m = confusion_matrix(LABELS, PREDS, len(LABEL_NAMES))
    assert m.shape == (29, 29) and int(m.sum()) == LABELS.numel()
    assert m[3, 3] == 2 and m[3, 5] == 1
    assert m[7, 7] == 3 and m[7, B] == 1 and m[7, 5] == 1
    assert m[B, B] == 1 and m[B, 3] == 1


def test_per_class_accuracy_is_the_recall_of_each_class():
    rows = per_class_accuracy(confusion_matrix(LABELS, PREDS, len(LABEL_NAMES)), LABEL_NAMES)
    assert [r['name'] for r in rows] == list(LABEL_NAMES)
    assert rows[3] == {'class': 3, 'name': LABEL_NAMES[3], 'support': 3, 'correct': 2,
                       'accuracy': pytest.approx(200 / 3)}
    assert rows[7]['accuracy'] == pytest.approx(60.0)
    assert rows[B]['accuracy'] == pytest.approx(50.0)
    assert rows[0]['support'] == 0 and rows[0]['accuracy'] is None   # undefined, not 0%


def test_event_detection_ignores_the_class():
    ev = event_detection(LABELS, PREDS, B)
    # 8 event segments; 7 predicted as some event (one as background); 1 of 2 backgrounds hit.
    assert (ev['true_positives'], ev['false_positives'], ev['false_negatives'],
            ev['true_negatives']) == (7, 1, 1, 1)
    assert ev['precision'] == pytest.approx(87.5) and ev['recall'] == pytest.approx(87.5)
    assert ev['f1'] == pytest.approx(87.5)
    none = event_detection(torch.full((1, 3), B), torch.full((1, 3), B), B)
    assert none['precision'] is None and none['recall'] is None and none['f1'] is None


def test_report_collects_everything_and_reads_as_markdown():
    rep = report(LABELS, PREDS, LABEL_NAMES)
    assert rep['videos'] == 2 and rep['segments'] == 10
    assert rep['accuracy'] == pytest.approx(60.0)   # 6 of 10 segments
    assert sum(map(sum, rep['confusion'])) == 10 and rep['labels'][B] == 'background'
    text = report_markdown(rep, 'test split')
    assert '## test split' in text and 'segment accuracy 60.000%' in text
    assert f'| 3 | {LABEL_NAMES[3]} | 3 | 2 | 66.67 | {LABEL_NAMES[5]} (1) |' in text
    assert '| 0 | Church bell | 0 | 0 | n/a |  |' in text
    with pytest.raises(ValueError):
        report(LABELS, PREDS[:1], LABEL_NAMES)


def test_merge_events_makes_intervals_of_equal_event_segments():
    classes = [B, 3, 3, B, B, 5, 5, 5, 3, B]
    scores = [0.9, 0.2, 0.4, 0.9, 0.9, 0.6, 0.7, 0.8, 0.5, 0.9]
    events = merge_events(classes, LABEL_NAMES, scores)
    assert [(e['class'], e['start_s'], e['end_s']) for e in events] == [(3, 1, 3), (5, 5, 8),
                                                                       (3, 8, 9)]
    assert [e['score'] for e in events] == pytest.approx([0.3, 0.7, 0.5])
    assert events[1]['class_name'] == LABEL_NAMES[5]
    assert merge_events([B] * 10, LABEL_NAMES) == []
    assert merge_events([4] * 10, LABEL_NAMES) == [{'class': 4, 'class_name': LABEL_NAMES[4],
                                       'start_s': 0, 'end_s': 10}]
    assert [(e['start_s'], e['end_s']) for e in merge_events([1, 2, 2], LABEL_NAMES)] == [(0, 1), (1, 3)]


def test_other_class_counts_name_their_own_labels():
    names = ('dog', 'car', 'background')
    labels, preds = torch.tensor([[0, 0, 2]]), torch.tensor([[0, 1, 2]])
    rep = report(labels, preds, names)
    assert rep['labels'] == list(names) and len(rep['confusion']) == 3
    assert rep['event_detection']['true_negatives'] == 1
    assert [e['class_name'] for e in merge_events([1, 1, 2, 0], names)] == ['car', 'dog']
