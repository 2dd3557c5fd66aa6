"""dataset.labels rebuilds the release's label and order files from the annotation text."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset.labels import build_labels, build_orders, event_labels, main, read_annotations
from dataset.layout import (ANNOTATIONS_FILE, AVE, CLOSS_FILE, FEATURE_KEY, LABELS_FILE,
                            MIL_LABELS_FILE, ORDER_FILES, ORDER_KEY, SPLIT_FILES)

NUM_CLASSES = BACKGROUND = AVE.num_classes   # background is label C

REPO = Path(__file__).resolve().parents[1]
EMPTY_EVENT_ROW = 26  # 'Church bell&VWi2ENBuTbw&good&0&0'


def read(path, key=FEATURE_KEY):
    with h5py.File(path, 'r') as f:
        return f[key][()]


@pytest.fixture(scope='module')
def real(meta_dir):
    """(annotations, labels, mil_labels) built from the real Annotations.txt."""
    annotations = read_annotations(meta_dir / ANNOTATIONS_FILE)
    return (annotations, *build_labels(annotations))


def test_one_row_per_line_with_one_hot_float32_labels(real):
    annotations, labels, mil_labels = real
    assert len(annotations) == 4143
    assert labels.shape == (4143, 10, NUM_CLASSES + 1) and labels.dtype == np.float32
    assert mil_labels.shape == (4143, NUM_CLASSES + 1) and mil_labels.dtype == np.float32
    assert (labels.sum(-1) == 1).all() and (mil_labels.sum(-1) == 1).all()
    assert (mil_labels[:, BACKGROUND] == 0).all()


def test_mil_labels_equal_the_release(real, meta_dir):
    np.testing.assert_array_equal(real[2], read(meta_dir / MIL_LABELS_FILE))


def test_event_segments_equal_the_release_labels_closs(real, meta_dir):
    labels = real[1]
    event = labels[..., :BACKGROUND].sum(-1)  # (N, 10), 1 on event segments
    np.testing.assert_array_equal(event, read(meta_dir / 'labels_closs.h5'))


def test_event_segments_carry_the_video_class(real):
    _, labels, mil_labels = real
    event = labels[..., BACKGROUND] == 0  # (N, 10)
    video_class = mil_labels.argmax(-1)[:, None].repeat(10, axis=1)
    np.testing.assert_array_equal(labels.argmax(-1)[event], video_class[event])


def test_empty_event_row_is_all_background_but_keeps_its_class(real):
    annotations, labels, mil_labels = real
    a = annotations[EMPTY_EVENT_ROW]
    assert (a.category, a.start, a.end) == ('Church bell', 0, 0)
    assert (labels[EMPTY_EVENT_ROW].argmax(-1) == BACKGROUND).all()
    assert mil_labels[EMPTY_EVENT_ROW].argmax() == 0


def test_orders_equal_the_release(real, meta_dir):
    orders = build_orders(real[0], {s: meta_dir / name for s, name in SPLIT_FILES.items()})
    for split, file in ORDER_FILES.items():
        expected = read(meta_dir / file, ORDER_KEY)
        assert orders[split].dtype == np.int64
        np.testing.assert_array_equal(orders[split], expected)


def test_header_and_blank_lines_are_tolerated(tmp_path):
    plain = tmp_path / 'plain.txt'
    plain.write_text('Bark&a&good&0&10\nCat&b&good&3&5\n')
    headed = tmp_path / 'headed.txt'
    headed.write_text('Category&VideoID&Quality&StartTime&EndTime\n\nBark&a&good&0&10\r\n'
                      'Cat&b&good&3&5\n\n')
    assert read_annotations(headed) == read_annotations(plain)
    labels, mil_labels = build_labels(read_annotations(headed))
    assert labels[1].argmax(-1).tolist() == [28, 28, 28, 22, 22, 28, 28, 28, 28, 28]
    assert mil_labels.argmax(-1).tolist() == [2, 22]


def test_event_labels_take_other_class_and_segment_counts():
    labels, mil_labels = event_labels([2, 0], [1, 0], [3, 0], num_classes=3, num_segments=4)
    assert labels.shape == (2, 4, 4) and mil_labels.shape == (2, 4)
    assert labels.argmax(-1).tolist() == [[3, 2, 2, 3], [3, 3, 3, 3]]  # column 3: background
    assert mil_labels.argmax(-1).tolist() == [2, 0]
    # The defaults are the AVE release's 28 classes and 10 segments.
    default, _ = event_labels([2], [1], [3])
    assert default.shape == (1, 10, NUM_CLASSES + 1) and default[0, 0, BACKGROUND] == 1


def test_event_labels_refuse_a_class_beyond_the_count():
    with pytest.raises(ValueError, match=r'class ids must lie in 0..2, got 0..3'):
        event_labels([0, 3], [0, 0], [1, 1], num_classes=3, num_segments=4)


@pytest.mark.parametrize('line, problem', [
    ('Bark&a&good&0', 'expected 5 fields'),
    ('Bark&a&good&0&10&x', 'expected 5 fields'),
    ('Bark&a&good&zero&10', 'must be integers'),
    ('Bark&a&good&6&4', 'start <= end'),
    ('Bark&a&good&0&11', 'end <= 10'),
    ('&a&good&0&10', 'empty category'),
])
def test_malformed_line_names_file_line_and_problem(tmp_path, line, problem):
    path = tmp_path / 'Annotations.txt'
    path.write_text(f'Bark&ok&good&0&10\n{line}\n')
    with pytest.raises(ValueError, match=f'Annotations.txt:2: .*{problem}'):
        read_annotations(path)


def test_unknown_category_names_file_and_line(tmp_path):
    path = tmp_path / 'Annotations.txt'
    path.write_text('Bark&ok&good&0&10\nUnicorn&x&good&0&10\n')
    with pytest.raises(ValueError, match="Annotations.txt:2: unknown category 'Unicorn'"):
        build_labels(read_annotations(path))


def test_header_is_only_tolerated_in_annotations_first_line(tmp_path):
    path = tmp_path / 'Annotations.txt'
    path.write_text('Bark&ok&good&0&10\nCategory&VideoID&Quality&StartTime&EndTime\n')
    with pytest.raises(ValueError, match='Annotations.txt:2: .*integers'):
        read_annotations(path)


def test_split_line_missing_from_annotations_names_file_and_line(tmp_path):
    annotations = tmp_path / 'Annotations.txt'
    annotations.write_text('Bark&a&good&0&10\nCat&b&good&3&5\n')
    split = tmp_path / 'valSet.txt'
    split.write_text('Cat&b&good&3&5\nCat&b&good&3&6\n')
    with pytest.raises(ValueError, match='valSet.txt:2: not a line of the annotations'):
        build_orders(read_annotations(annotations), {'val': split})


def test_split_order_follows_split_file_lines(tmp_path):
    annotations = tmp_path / 'Annotations.txt'
    annotations.write_text('Bark&a&good&0&10\nCat&b&good&3&5\nBus&c&good&0&2\n')
    split = tmp_path / 'testSet.txt'
    split.write_text('Bus&c&good&0&2\nBark&a&good&0&10\n')
    orders = build_orders(read_annotations(annotations), {'test': split})
    assert orders['test'].tolist() == [2, 0]


def test_cli_writes_the_release_files(meta_dir, tmp_path, capsys):
    main(['--annotations', str(meta_dir / ANNOTATIONS_FILE), '--out', str(tmp_path),
          '--splits', str(meta_dir)])
    np.testing.assert_array_equal(read(tmp_path / MIL_LABELS_FILE),
                                  read(meta_dir / MIL_LABELS_FILE))
    assert read(tmp_path / LABELS_FILE).shape == (4143, 10, 29)
    for file in ORDER_FILES.values():
        np.testing.assert_array_equal(read(tmp_path / file, ORDER_KEY),
                                      read(meta_dir / file, ORDER_KEY))
    assert '4143 videos' in capsys.readouterr().out
    assert not list(tmp_path.glob('.*.tmp'))


def test_cli_without_splits_writes_only_labels(tmp_path):
    annotations = tmp_path / 'Annotations.txt'
    annotations.write_text('Bark&a&good&0&10\n')
    main(['--annotations', str(annotations), '--out', str(tmp_path / 'out')])
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == sorted(
        [LABELS_FILE, MIL_LABELS_FILE, CLOSS_FILE])
    assert read(tmp_path / 'out' / CLOSS_FILE).tolist() == [[1.0] * 10]


@pytest.mark.parametrize('content, message', [
    (None, 'No such file'),
    ('Bark&a&good&0&10\nBark&b&good\n', 'Annotations.txt:2: expected 5 fields'),
])
def test_cli_bad_input_exits_non_zero_with_one_line(tmp_path, content, message):
    annotations = tmp_path / 'Annotations.txt'
    if content is not None:
        annotations.write_text(content)
    proc = subprocess.run([sys.executable, '-m', 'dataset.labels', '--annotations',
                           str(annotations), '--out', str(tmp_path / 'out')],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()
