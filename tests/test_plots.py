"""utils.plots: valid PNGs of the promised pixel size, and no matplotlib unless asked."""
import struct
import subprocess
import sys

import pytest
import torch

from dataset.layout import BACKGROUND as B
from tests.helpers import REPO
from utils import plots
from utils.metrics import report

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_size(path):
    """(width, height) of a PNG file, read from its IHDR chunk; fails if it is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f'{path} is not a PNG'
    assert head[12:16] == b'IHDR'
    return struct.unpack('>II', head[16:24])


@pytest.fixture(scope='module')
def rep():
    labels = torch.tensor([[B, 3, 3, 3, 3, 3, 3, B, B, B], [7] * 10, [19] * 5 + [B] * 5])
    preds = torch.tensor([[B, B, 3, 3, 3, 1, 1, 3, 3, B], [7] * 9 + [B], [19] * 10])
    return report(labels, preds)


def test_timeline_png(tmp_path):
    labels = [B, 3, 3, 3, 3, 3, 3, B, B, B]
    preds = [B, B, 3, 3, 3, 1, 1, 3, 3, B]
    path = plots.save(plots.timeline_figure('video 0', preds, [0.9] * 10, labels),
                      tmp_path / 'timeline.png')
    assert png_size(path) == plots.SIZES['timeline']
    without_labels = plots.save(plots.timeline_figure('video 1', preds),
                                tmp_path / 'timeline_nolabels.png')
    assert png_size(without_labels) == plots.SIZES['timeline']


def test_report_figures_are_pngs_of_their_size(rep, tmp_path):
    confusion, per_class = plots.save_report_figures(tmp_path, rep, 'test split')
    assert confusion.name == 'confusion_matrix.png' and per_class.name == 'per_class_accuracy.png'
    assert png_size(confusion) == plots.SIZES['confusion']
    assert png_size(per_class) == plots.SIZES['per_class']


def test_figures_render_to_rgb_arrays_for_tensorboard(rep):
    image = plots.to_image(plots.per_class_figure(rep['per_class'], rep['accuracy']))
    width, height = plots.SIZES['per_class']
    assert image.shape == (height, width, 3) and image.dtype.name == 'uint8'
    assert image.min() < 100 < 200 < image.max()   # something is drawn on the white page


def test_training_code_does_not_load_matplotlib():
    code = 'import sys, utils.run, utils.metrics; sys.exit("matplotlib" in sys.modules)'
    assert subprocess.run([sys.executable, '-c', code], cwd=REPO).returncode == 0
