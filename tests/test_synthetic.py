"""dataset.synthetic writes the AVE layout with real statistics and a two-modality signal."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset import synthetic
from dataset.labels import build_labels, read_annotations
from dataset.layout import (ANNOTATIONS_FILE, AUDIO_FILES, BACKGROUND, FEATURE_KEY, LABELS_FILE,
                            MIL_LABELS_FILE, NOISY_AUDIO_FILE, NOISY_LABELS_FILE,
                            NOISY_VISUAL_FILE, NUM_CLASSES, ORDER_FILES, ORDER_KEY, VISUAL_FILE)

REPO = Path(__file__).resolve().parents[1]
FEATURE_FILES = (AUDIO_FILES[0], VISUAL_FILE, NOISY_AUDIO_FILE, NOISY_VISUAL_FILE)


def read(path, key=FEATURE_KEY):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def read_all(folder):
    """{file name: array} of every .h5 file in `folder`."""
    return {p.name: read(p, ORDER_KEY if p.name in ORDER_FILES.values() else FEATURE_KEY)
            for p in sorted(Path(folder).glob('*.h5'))}


@pytest.fixture(scope='module')
def full_plan():
    """The plan (no features) of a full-size set: 4143 videos, seed 0."""
    return synthetic.make_plan(seed=0)


def test_writes_the_ten_release_files_with_keys_shapes_and_dtypes(tiny_ave):
    expected = {
        AUDIO_FILES[0]: ((64, 10, 128), np.float32),
        VISUAL_FILE: ((64, 10, 7, 7, 512), np.float32),
        LABELS_FILE: ((64, 10, 29), np.float32),
        MIL_LABELS_FILE: ((64, 29), np.float32),
        NOISY_AUDIO_FILE: ((8, 10, 128), np.float32),
        NOISY_VISUAL_FILE: ((8, 10, 7, 7, 512), np.float32),
        NOISY_LABELS_FILE: ((8, 29), np.float32),
    }
    assert sorted(p.name for p in tiny_ave.iterdir()) == sorted([*expected, *ORDER_FILES.values()])
    for name, (shape, dtype) in expected.items():
        with h5py.File(tiny_ave / name, 'r') as f:
            assert list(f) == [FEATURE_KEY]
            assert (f[FEATURE_KEY].shape, f[FEATURE_KEY].dtype) == (shape, dtype), name
    for name in ORDER_FILES.values():
        with h5py.File(tiny_ave / name, 'r') as f:
            assert list(f) == [ORDER_KEY] and f[ORDER_KEY].dtype == np.int64


def test_labels_are_one_hot_and_background_videos_have_no_event(tiny_ave):
    labels, mil_labels = read(tiny_ave / LABELS_FILE), read(tiny_ave / MIL_LABELS_FILE)
    assert set(np.unique(labels)) == {0, 1} and (labels.sum(-1) == 1).all()
    assert (mil_labels.sum(-1) == 1).all() and (mil_labels[:, BACKGROUND] == 0).all()
    event = labels[..., BACKGROUND] == 0
    assert (labels.argmax(-1)[event] == mil_labels.argmax(-1)[:, None].repeat(10, 1)[event]).all()
    noisy = read(tiny_ave / NOISY_LABELS_FILE)
    assert (noisy.argmax(-1) == BACKGROUND).all() and (noisy.sum(-1) == 1).all()


def test_orders_are_shuffled_disjoint_and_cover_all_rows(tiny_ave):
    orders = [read(tiny_ave / name, ORDER_KEY) for name in ORDER_FILES.values()]
    assert [len(o) for o in orders] == [52, 6, 6]
    assert sorted(np.concatenate(orders).tolist()) == list(range(64))
    assert not (np.diff(orders[0]) > 0).all()


def test_features_look_like_vggish_and_pool5(tiny_ave):
    audio = read(tiny_ave / AUDIO_FILES[0])  # (64, 10, 128)
    assert audio.min() >= 0
    assert 0.6 < (audio == 0).mean() < 0.7
    assert abs(np.linalg.norm(audio, axis=-1).mean() - 3.2) < 0.2
    visual = read(tiny_ave / VISUAL_FILE)  # (64, 10, 7, 7, 512)
    assert visual.min() >= 0 and 0.5 < (visual == 0).mean() < 0.9


def test_float64_stores_features_as_float64_and_labels_as_float32(tmp_path):
    summary = synthetic.generate(tmp_path, videos=3, background=1, float64=True, progress=False)
    assert summary['dtype'] == 'float64'
    for name in FEATURE_FILES:
        assert read(tmp_path / name).dtype == np.float64
    assert read(tmp_path / LABELS_FILE).dtype == np.float32


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    for folder, seed in [('a', 1), ('b', 1), ('c', 2)]:
        synthetic.generate(tmp_path / folder, videos=5, background=2, seed=seed, progress=False)
    a, b, c = (read_all(tmp_path / f) for f in 'abc')
    assert a.keys() == b.keys() == c.keys() and len(a) == 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    for name in FEATURE_FILES:
        assert not np.array_equal(a[name], c[name])


def test_class_sizes_are_exactly_the_real_ones_at_full_size(full_plan):
    counts = np.bincount(full_plan.classes, minlength=NUM_CLASSES)
    assert counts.tolist() == list(synthetic.CLASS_COUNTS)


def test_event_statistics_are_close_to_the_real_ones(full_plan):
    lengths = full_plan.ends - full_plan.starts
    full = lengths == 10
    assert abs(full.mean() - 0.664) < 0.03
    assert abs(lengths.mean() / 10 - 0.829) < 0.02
    assert lengths.min() >= 2
    partial = ~full
    touching = (full_plan.starts[partial] == 0) | (full_plan.ends[partial] == 10)
    assert abs(touching.mean() - 0.82) < 0.04
    # Per class, the share of full-length events follows the real one.
    share = np.array([full[full_plan.classes == c].mean() for c in range(NUM_CLASSES)])
    assert np.abs(share - synthetic.FULL_LENGTH_SHARE).max() < 0.15
    assert np.corrcoef(share, synthetic.FULL_LENGTH_SHARE)[0, 1] > 0.9


def test_full_size_splits_are_the_real_sizes_and_hold_every_class(full_plan):
    assert {s: len(o) for s, o in full_plan.orders.items()} == synthetic.REAL_SPLIT_SIZES
    for order in full_plan.orders.values():
        assert len(np.unique(full_plan.classes[order])) == NUM_CLASSES
    assert len(full_plan.noisy_classes) == synthetic.REAL_BACKGROUND


@pytest.mark.parametrize('videos, sizes', [(3, (1, 1, 1)), (64, (52, 6, 6)), (1000, (806, 97, 97))])
def test_other_sizes_split_proportionally(videos, sizes):
    assert tuple(synthetic.split_sizes(videos).values()) == sizes


def test_full_size_splits_hold_each_class_in_proportion(full_plan):
    counts = np.bincount(full_plan.classes, minlength=NUM_CLASSES)
    for split, order in full_plan.orders.items():
        in_split = np.bincount(full_plan.classes[order], minlength=NUM_CLASSES)
        # val and test are within a rounding of their share; train takes both roundings.
        assert np.abs(in_split - counts * len(order) / counts.sum()).max() < 1.5, split


@pytest.mark.parametrize('videos', [30, 64, 300])
def test_small_splits_hold_as_many_classes_as_they_can(videos):
    plan = synthetic.make_plan(videos, seed=3)
    present = len(np.unique(plan.classes))
    for order in plan.orders.values():
        assert len(np.unique(plan.classes[order])) == min(len(order), present)


def test_fewer_than_three_videos_is_refused():
    with pytest.raises(ValueError, match='at least 3 videos'):
        synthetic.make_plan(2)


def test_background_count_defaults_to_the_real_share():
    assert synthetic.default_background(4143) == 178
    assert synthetic.default_background(1000) == 43
    assert synthetic.default_background(5) == 2


def test_event_segments_are_audible_and_visible_others_at_most_one(full_plan):
    labels, _ = full_plan.labels()
    event = labels[..., BACKGROUND] == 0  # (N, 10)
    both = full_plan.audible & full_plan.visible
    np.testing.assert_array_equal(both, event)
    # Off-event segments: audible only, visible only or neither, about a third each.
    off = ~event
    kinds = [(full_plan.audible & off).sum(), (full_plan.visible & off).sum(),
             (~full_plan.audible & ~full_plan.visible).sum()]
    assert all(abs(k / off.sum() - 1 / 3) < 0.03 for k in kinds)


def test_background_videos_are_never_audible_and_visible_at_once(full_plan):
    assert not (full_plan.noisy_audible & full_plan.noisy_visible).any()
    assert full_plan.noisy_audible.any() and full_plan.noisy_visible.any()


def test_features_carry_the_class_only_where_audible_or_visible():
    plan = synthetic.make_plan(40, seed=5)
    prototypes = synthetic.Prototypes.sample(5)
    rng = np.random.default_rng(0)
    audio = synthetic.audio_features(plan.classes, plan.audible, prototypes, 0.5, rng)
    visual = synthetic.visual_features(plan.classes, plan.visible, prototypes, 0.5, rng)
    # Project on every class prototype: the video's class wins where it is present.
    audio_score = audio @ prototypes.audio.T  # (40, 10, 28)
    visual_score = visual.sum((2, 3)) @ prototypes.visual.T  # (40, 10, 28)
    for score, present in [(audio_score, plan.audible), (visual_score, plan.visible)]:
        own = np.take_along_axis(score, plan.classes[:, None, None].repeat(10, 1), -1)[..., 0]
        assert (score.argmax(-1) == plan.classes[:, None])[present].mean() > 0.95
        assert own[present].mean() > 3 * abs(own[~present].mean())


def test_object_masks_are_rectangles_inside_the_map_that_move_at_most_a_cell():
    masks = synthetic.object_masks(50, np.random.default_rng(0))  # (50, 10, 7, 7)
    area = masks.sum((2, 3))
    assert area.min() >= 4 and area.max() <= 16
    assert (area == area[:, :1]).all()  # same size in every segment of a video
    rows = masks.any(3).argmax(2)  # top row per segment
    cols = masks.any(2).argmax(2)
    assert (np.abs(np.diff(rows, axis=1)) + np.abs(np.diff(cols, axis=1)) <= 1).all()


def test_plan_from_annotations_has_exactly_the_label_builder_labels(meta_dir):
    annotations = read_annotations(meta_dir / ANNOTATIONS_FILE)
    plan = synthetic.make_plan(annotations=annotations)
    for got, expected in zip(plan.labels(), build_labels(annotations)):
        np.testing.assert_array_equal(got, expected)
    assert not (plan.audible & plan.visible)[26].any()  # the empty-event row


def test_cli_writes_a_tiny_set_from_annotations(meta_dir, tmp_path):
    # A few real rows (incl. the empty event, row 26), written to a temporary file.
    lines = (meta_dir / ANNOTATIONS_FILE).read_text().splitlines()[20:30]
    annotations = tmp_path / ANNOTATIONS_FILE
    annotations.write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, '-m', 'dataset.synthetic', '--out', str(out),
                           '--annotations', str(annotations), '--background', '2'],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    expected_labels, expected_mil = build_labels(read_annotations(annotations))
    np.testing.assert_array_equal(read(out / LABELS_FILE), expected_labels)
    np.testing.assert_array_equal(read(out / MIL_LABELS_FILE), expected_mil)
    assert read(out / VISUAL_FILE).shape[0] == 10


def test_cli_flags_reach_the_files(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, '-m', 'dataset.synthetic', '--out', str(out),
                           '--videos', '4', '--background', '3', '--seed', '7', '--float64',
                           '--noise', '0.5'], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert '4 videos' in proc.stdout and 'noise 0.5' in proc.stdout
    same = synthetic.generate(tmp_path / 'api', videos=4, background=3, seed=7, float64=True,
                              noise=0.5, progress=False)
    assert same['background'] == 3
    cli, api = read_all(out), read_all(tmp_path / 'api')
    for name in api:
        np.testing.assert_array_equal(cli[name], api[name])
    assert cli[VISUAL_FILE].dtype == np.float64


@pytest.mark.parametrize('args, message', [
    (['--videos', '2'], 'at least 3 videos'),
    (['--videos', '5', '--background', '0'], 'at least 1 background video'),
    (['--annotations', 'missing.txt'], 'No such file'),
])
def test_cli_bad_arguments_exit_non_zero_with_one_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, '-m', 'dataset.synthetic', '--out', str(tmp_path / 'o'),
                           *args], capture_output=True, text=True, cwd=tmp_path,
                          env={'PYTHONPATH': str(REPO)})
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_videos_and_annotations_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match='either videos or annotations'):
        synthetic.generate(tmp_path, videos=5, annotations=tmp_path / 'a.txt', progress=False)
