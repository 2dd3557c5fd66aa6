"""reports.plots: the figures show what they claim (events, counts, accuracies), as valid PNGs,
and nothing loads matplotlib unless a figure is asked for."""
import struct
import subprocess
import sys

import pytest
import torch

from tests.helpers import BACKGROUND as B
from tests.helpers import LABEL_NAMES
from tests.helpers import REPO
from reports import plots
from reports.metrics import report

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(path):
    """(width, height) of a PNG file, read from its IHDR chunk; fails if it is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f'{path} is not a PNG'
    assert head[12:16] == b'IHDR'
    return struct.unpack('>II', head[16:24])


def texts(fig):
    """Every text drawn in the figure's axes, its titles and tick labels."""
    found = []
    for ax in fig.axes:
        found += [t.get_text() for t in ax.texts] + [ax.get_title()]
        found += [t.get_text() for t in ax.get_yticklabels() + ax.get_xticklabels()]
    return [' '.join(t.split()) for t in found]   # class names may be wrapped over lines


@pytest.fixture(scope='module')
def rep():
    labels = torch.tensor([[B, 3, 3, 3, 3, 3, 3, B, B, B], [7] * 10, [19] * 5 + [B] * 5])
    preds = torch.tensor([[B, B, 3, 3, 3, 1, 1, 3, 3, B], [7] * 9 + [B], [19] * 10])
    return report(labels, preds, LABEL_NAMES)


def test_timeline_shows_each_event_with_its_class_and_the_confidences():
    labels = [B, 3, 3, 3, 3, 3, 3, B, B, B]
    preds = [B, B, 3, 3, 3, 1, 1, 3, 3, B]
    fig = plots.timeline_figure('video 0', preds, LABEL_NAMES, [0.9] * 10, labels)
    shown = texts(fig)
    # Ground truth: one event of class 3; prediction: class 3, class 1, class 3 again.
    assert shown.count(LABEL_NAMES[3]) == 3 and shown.count(LABEL_NAMES[1]) == 1
    assert shown.count('0.90') == 10
    assert 'video 0: 5/10 segments correct' in shown
    assert [t.get_text() for t in fig.legends[0].texts] == [LABEL_NAMES[1], LABEL_NAMES[3],
                                                            'background', 'wrong segment']
    alone = texts(plots.timeline_figure('video 1', preds, LABEL_NAMES))
    assert alone.count(LABEL_NAMES[3]) == 2 and 'video 1' in alone   # prediction row only


def test_confusion_figure_writes_each_nonzero_count_in_its_cell(rep):
    fig = plots.confusion_figure(rep['confusion'], rep['labels'])
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
             for t in fig.axes[0].texts}
    expected = {(i, j): n for i, row in enumerate(rep['confusion']) for j, n in enumerate(row) if n}
    assert cells == expected
    assert f'3 {LABEL_NAMES[3]} (6)' in texts(fig)   # true class with its support


def test_per_class_figure_labels_each_bar_with_accuracy_and_counts(rep):
    fig = plots.per_class_figure(rep['per_class'], rep['accuracy'])
    bars = [p.get_width() for p in fig.axes[0].patches]
    assert bars == pytest.approx([r['accuracy'] or 0.0 for r in rep['per_class']])
    shown = texts(fig)
    assert '50.0% (3/6)' in shown and '90.0% (9/10)' in shown and 'no segments' in shown
    assert any(f"overall {rep['accuracy']:.1f}%" in t for t in shown)


def test_report_figures_are_written_as_pngs(rep, tmp_path):
    confusion, per_class = plots.save_report_figures(tmp_path, rep, 'test split')
    assert confusion.name == 'confusion_matrix.png' and per_class.name == 'per_class_accuracy.png'
    assert png_size(confusion) == plots.SIZES['confusion']   # the size README promises
    assert png_size(per_class) == plots.SIZES['per_class']


def test_figures_render_to_rgb_arrays_for_tensorboard(rep):
    image = plots.to_image(plots.per_class_figure(rep['per_class'], rep['accuracy']))
    width, height = plots.SIZES['per_class']
    assert image.shape == (height, width, 3) and image.dtype.name == 'uint8'
    assert image.min() < 100 < 200 < image.max()   # something is drawn on the white page


def test_training_code_does_not_load_matplotlib():
    code = 'import sys, main, reports.metrics; sys.exit("matplotlib" in sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], cwd=REPO).returncode == 0
