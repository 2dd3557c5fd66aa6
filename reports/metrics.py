"""Where a model is right and wrong: segment metrics from (N, T) labels and predictions.

Every function takes int64 class indices (0..C-1 events, C = background; C = 28 in AVE)
of the same shape and returns plain Python numbers, so a report can go straight to JSON.
`names` are the C + 1 label names, background last. Accuracies, precision, recall and F1
are percentages, like the accuracy the training loop logs.
"""
import torch


def _percent(part, whole):
    """100 * part / whole, or None where whole is 0 (undefined, not 0%)."""
    return 100.0 * part / whole if whole else None


def confusion_matrix(labels, preds, num_labels):
    """(C + 1, C + 1) int64 counts: [true class, predicted class], summing to labels.numel()."""
    labels, preds = labels.flatten().cpu(), preds.flatten().cpu()
    return torch.bincount(labels * num_labels + preds,
                          minlength=num_labels ** 2).reshape(num_labels, num_labels)


def accuracy(labels, preds):
    """Segment accuracy (%) over all segments, background included (the AVE metric)."""
    return _percent(int((labels == preds).sum()), labels.numel())


def per_class_accuracy(confusion, names):
    """[{class, name, support, correct, accuracy}] for the C + 1 labels; accuracy (%) is the
    share of a class's segments predicted as that class (its recall); None without support."""
    support = confusion.sum(1).tolist()
    correct = confusion.diagonal().tolist()
    return [{'class': c, 'name': names[c], 'support': support[c], 'correct': correct[c],
             'accuracy': _percent(correct[c], support[c])} for c in range(len(names))]


def event_detection(labels, preds, background):
    """Event-vs-background scores, whatever the class: a segment is an event where its
    class is not `background` (C). {precision, recall, f1 (%, None where undefined), counts}."""
    true_event, pred_event = labels != background, preds != background
    tp = int((true_event & pred_event).sum())
    fp = int((~true_event & pred_event).sum())
    fn = int((true_event & ~pred_event).sum())
    precision, recall = _percent(tp, tp + fp), _percent(tp, tp + fn)
    f1 = _percent(2 * tp, 2 * tp + fp + fn)
    return {'precision': precision, 'recall': recall, 'f1': f1, 'true_positives': tp,
            'false_positives': fp, 'false_negatives': fn,
            'true_negatives': int((~true_event & ~pred_event).sum())}


def report(labels, preds, names):
    """Everything above for (N, T) `labels` and `preds`, as a JSON-ready dict."""
    if labels.shape != preds.shape:
        raise ValueError(f'labels {tuple(labels.shape)} and preds {tuple(preds.shape)} differ')
    confusion = confusion_matrix(labels, preds, len(names))
    return {'videos': labels.shape[0], 'segments': labels.numel(),
            'accuracy': accuracy(labels, preds),
            'event_detection': event_detection(labels, preds, len(names) - 1),
            'per_class': per_class_accuracy(confusion, names),
            'labels': list(names),
            'confusion': confusion.tolist()}


def merge_events(classes, names, scores=None):
    """The events of one video: runs of equal consecutive non-background segment classes.

    classes: T class indices (segment t covers seconds [t, t+1)); names: the C + 1 label
    names (background last); scores: T confidences or None. Returns [{class, class_name,
    start_s, end_s (exclusive), score}] in time order; score is the mean confidence of the
    run's segments (omitted without scores).
    """
    background = len(names) - 1
    classes = [int(c) for c in classes]
    events, start = [], 0
    for t in range(1, len(classes) + 1):
        if t < len(classes) and classes[t] == classes[start]:
            continue
        c = classes[start]
        if c != background:
            event = {'class': c, 'class_name': names[c], 'start_s': start, 'end_s': t}
            if scores is not None:
                event['score'] = sum(float(s) for s in scores[start:t]) / (t - start)
            events.append(event)
        start = t
    return events


def _fmt(value, digits=2):
    return 'n/a' if value is None else f'{value:.{digits}f}'


def _pct(value):
    return 'n/a' if value is None else f'{value:.2f}%'


def event_summary(rep):
    """One line of a report's event-vs-background scores."""
    ev = rep['event_detection']
    return (f"event vs background: precision {_pct(ev['precision'])}, recall "
            f"{_pct(ev['recall'])}, F1 {_pct(ev['f1'])}")


def report_markdown(rep, title):
    """A readable Markdown page of one report: totals, event detection, per-class table,
    and the classes most often taken for another."""
    ev = rep['event_detection']
    lines = [f'## {title}', '',
             f"{rep['videos']} videos, {rep['segments']} segments: "
             f"**segment accuracy {_fmt(rep['accuracy'], 3)}%**", '',
             'Event vs background (any class): '
             f"precision {_pct(ev['precision'])}, recall {_pct(ev['recall'])}, "
             f"F1 {_pct(ev['f1'])} (TP {ev['true_positives']}, FP {ev['false_positives']}, "
             f"FN {ev['false_negatives']}, TN {ev['true_negatives']})", '',
             '| class | name | segments | correct | accuracy (%) | most often predicted instead |',
             '|---:|---|---:|---:|---:|---|']
    confusion = rep['confusion']
    for row in rep['per_class']:
        c = row['class']
        wrong = [(n, p) for p, n in enumerate(confusion[c]) if p != c and n]
        instead = ''
        if wrong:
            n, p = max(wrong)
            instead = f'{rep["labels"][p]} ({n})'
        lines.append(f"| {c} | {row['name']} | {row['support']} | {row['correct']} | "
                     f"{_fmt(row['accuracy'])} | {instead} |")
    lines.append('')
    return '\n'.join(lines)
