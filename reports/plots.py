"""Pictures of what the model does: a video's timeline, the confusion matrix, per-class bars.

Figures are built with matplotlib's object API on the Agg canvas, never pyplot, so
nothing here needs a display or touches global plotting state; matplotlib is imported
only when a picture is made, so training without pictures never loads it. Each
`*_figure` function returns a Figure of a fixed pixel size (SIZES); `save` writes it as
PNG and `to_image` renders it as an (H, W, 3) uint8 array for TensorBoard.
"""
import textwrap
from pathlib import Path

import numpy as np

from reports.metrics import merge_events

DPI = 100
# (width, height) in pixels of each kind of figure.
SIZES = {'timeline': (1200, 330), 'confusion': (1150, 1050), 'per_class': (900, 820)}
BACKGROUND_COLOR = '#dddddd'
WRONG_COLOR = 'black'   # not a class colour: tab20 has reds
MAX_SCORED = 30         # segments up to which a timeline writes each confidence


def _figure(kind):
    from matplotlib.figure import Figure
    width, height = SIZES[kind]
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout='constrained')


def class_colors(num_labels):
    """`num_labels` RGBA colours, background (the last) grey: 28 distinct event colours
    (tab20 + tab20b), repeated for data sets with more classes."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba
    colors = [colormaps['tab20'](i) for i in range(20)]
    colors += [colormaps['tab20b'](i) for i in (0, 2, 4, 6, 8, 10, 12, 14)]
    return [colors[c % len(colors)] for c in range(num_labels - 1)] + [to_rgba(BACKGROUND_COLOR)]


def _text_color(rgba):
    r, g, b = rgba[:3]
    return 'black' if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else 'white'


def _draw_row(ax, y, classes, names, colors, scores=None, wrong=None):
    """One timeline row at height y: grey background, a labelled bar per event, and
    optionally each segment's confidence and a black frame on wrong segments."""
    from matplotlib.patches import Rectangle
    height = 0.8
    ax.add_patch(Rectangle((0, y - height / 2), len(classes), height,
                           facecolor=BACKGROUND_COLOR, edgecolor='none'))
    for event in merge_events(classes, names):
        start, end, c = event['start_s'], event['end_s'], event['class']
        ax.add_patch(Rectangle((start, y - height / 2), end - start, height, facecolor=colors[c],
                               edgecolor='white', linewidth=1.5))
        name = textwrap.fill(event['class_name'], width=max(8, 11 * (end - start)))
        ax.text((start + end) / 2, y + (0.1 if scores is not None else 0), name,
                ha='center', va='center', fontsize=9 if end - start > 1 else 7.5,
                color=_text_color(colors[c]), clip_on=True)
    for t in range(len(classes)):
        if scores is not None:
            c = classes[t]
            ax.text(t + 0.5, y - 0.28, f'{float(scores[t]):.2f}', ha='center', va='center',
                    fontsize=7.5, color=_text_color(colors[c]))
        if wrong is not None and wrong[t]:
            ax.add_patch(Rectangle((t + 0.04, y - height / 2 + 0.04), 0.92, height - 0.08,
                                   facecolor='none', edgecolor=WRONG_COLOR, linewidth=2.2))


def timeline_figure(title, preds, names, scores=None, labels=None):
    """Ground truth (when `labels` is given) above the prediction over the T segments.

    preds, labels: T class indices; names: the C + 1 label names (background last);
    scores: T confidences of the predictions (written in the segments up to MAX_SCORED
    of them; a longer video gets sparser ticks and no numbers).
    """
    from matplotlib.patches import Patch
    preds = [int(p) for p in preds]
    labels = None if labels is None else [int(c) for c in labels]
    colors = class_colors(len(names))
    fig = _figure('timeline')
    ax = fig.add_subplot()
    rows = [('prediction', preds)] if labels is None else [('ground truth', labels),
                                                          ('prediction', preds)]
    wrong = None if labels is None else [p != c for p, c in zip(preds, labels)]
    T = len(preds)
    scored = scores is not None and T <= MAX_SCORED
    for i, (name, classes) in enumerate(rows):
        y = len(rows) - 1 - i
        is_pred = name == 'prediction'
        _draw_row(ax, y, classes, names, colors, scores if is_pred and scored else None,
                  wrong if is_pred else None)
    ax.set_xlim(0, T)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, T) if T / s <= 30)
    ax.set_xticks(range(0, T + 1, step))
    ax.set_xlabel('time (s)' + ('; numbers: confidence of the predicted class' if scored else ''))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in reversed(rows)], fontsize=10)
    ax.tick_params(axis='y', length=0)
    for side in ('top', 'right', 'left'):
        ax.spines[side].set_visible(False)
    if labels is not None:
        correct = T - sum(wrong)
        title = f'{title}: {correct}/{T} segments correct'
    ax.set_title(title, fontsize=11)
    shown = sorted(set(preds) | set(labels or []))
    handles = [Patch(facecolor=colors[c], label=names[c]) for c in shown]
    if wrong is not None and any(wrong):
        handles.append(Patch(facecolor='none', edgecolor=WRONG_COLOR, linewidth=2,
                             label='wrong segment'))
    fig.legend(handles=handles, loc='outside right center', fontsize=8.5, frameon=False)
    return fig


def confusion_figure(confusion, names, title='Confusion matrix'):
    """The (C + 1) x (C + 1) confusion matrix ([true, predicted] counts), coloured by the
    share of each true class's segments so that small classes show as clearly as large
    ones; counts are written in the cells up to 40 labels."""
    counts = np.asarray(confusion)
    support = counts.sum(1, keepdims=True)
    share = counts / np.maximum(support, 1)
    fig = _figure('confusion')
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap='Blues', vmin=0, vmax=1)
    n = len(counts)
    for i in range(n if n <= 40 else 0):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha='center', va='center', fontsize=6.5,
                        color='white' if share[i, j] > 0.5 else 'black')
    names = [f'{c} {names[c]}' for c in range(n)]
    fontsize = max(3.0, min(8.0, 8 * 29 / n))
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=60, ha='right', rotation_mode='anchor', fontsize=fontsize)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f'{name} ({int(s)})' for name, s in zip(names, support[:, 0])],
                       fontsize=fontsize)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class (segments)')
    ax.set_title(title, fontsize=12)
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the true class's segments")
    return fig


def per_class_figure(per_class, overall=None, title='Per-class accuracy'):
    """Horizontal bars of each class's accuracy (the `per_class` list of metrics.report),
    annotated with correct/support; a dashed line at the `overall` accuracy."""
    colors = class_colors(len(per_class))
    fig = _figure('per_class')
    ax = fig.add_subplot()
    y = np.arange(len(per_class))
    values = [row['accuracy'] or 0.0 for row in per_class]
    ax.barh(y, values, color=[colors[row['class']] for row in per_class], height=0.75)
    for row, value in zip(per_class, values):
        text = ('no segments' if row['accuracy'] is None else
                f"{row['accuracy']:.1f}%  ({row['correct']}/{row['support']})")
        ax.text(min(value, 100) + 1, row['class'], text, va='center', fontsize=7.5)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{row['class']} {row['name']}" for row in per_class],
                       fontsize=max(3.0, min(8.0, 8 * 29 / len(per_class))))
    ax.invert_yaxis()
    ax.set_xlim(0, 125)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel('accuracy (%): share of the class\'s segments predicted as it')
    if overall is not None:
        ax.axvline(overall, color='black', linestyle='--', linewidth=1)
        title = f'{title} (dashed line: overall {overall:.1f}%)'
    ax.set_title(title, fontsize=12)
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)
    return fig


def save_report_figures(folder, rep, name):
    """confusion_matrix.png and per_class_accuracy.png of a metrics.report in `folder`;
    `name` (e.g. 'test split') goes into the titles. Returns the two paths."""
    folder = Path(folder)
    return (save(confusion_figure(rep['confusion'], rep['labels'], f'Confusion matrix, {name}'),
                 folder / 'confusion_matrix.png'),
            save(per_class_figure(rep['per_class'], rep['accuracy'], f'Per-class accuracy, {name}'),
                 folder / 'per_class_accuracy.png'))


def save(fig, path):
    """Write `fig` as a PNG at `path` (its fixed pixel size); returns the path."""
    fig.savefig(path, format='png', dpi=DPI)
    fig.clear()
    return path


def to_image(fig):
    """Render `fig` into an (H, W, 3) uint8 array (for TensorBoard's add_image)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    fig.clear()
    return image

