"""dataset.synthetic writes the AVE layout with real statistics and a two-modality signal."""
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from tqdm import tqdm

from dataset import synthetic
from dataset.labels import build_labels, read_annotations
from dataset.layout import (ANNOTATIONS_FILE, AUDIO_FILES, AVE, CLASSES_FILE, CLOSS_FILE,
                            FEATURE_KEY, LABELS_FILE, MATCH_ORDER_FILES, MIL_LABELS_FILE,
                            NOISY_AUDIO_FILE, NOISY_LABELS_FILE, NOISY_VISUAL_FILE, ORDER_FILES,
                            ORDER_KEY, VISUAL_FILE, VISUAL_VEC_FILE)

REPO = Path(__file__).resolve().parents[1]
FEATURE_FILES = (AUDIO_FILES[0], VISUAL_FILE, NOISY_AUDIO_FILE, NOISY_VISUAL_FILE)


def read(path, key=FEATURE_KEY):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def read_all(folder):
    """{file name: array} of every .h5 file in `folder`."""
    orders = (*ORDER_FILES.values(), *MATCH_ORDER_FILES.values())
    return {p.name: read(p, ORDER_KEY if p.name in orders else FEATURE_KEY)
            for p in sorted(Path(folder).glob('*.h5'))}


@pytest.fixture(scope='module')
def full_plan():
    """The plan (no features) of a full-size set: 4143 videos, seed 0."""
    return synthetic.make_plan(seed=0)


def test_writes_the_release_files_with_keys_shapes_and_dtypes(tiny_ave):
    expected = {
        AUDIO_FILES[0]: ((64, 10, 128), np.float32),
        VISUAL_FILE: ((64, 10, 7, 7, 512), np.float32),
        LABELS_FILE: ((64, 10, 29), np.float32),
        MIL_LABELS_FILE: ((64, 29), np.float32),
        NOISY_AUDIO_FILE: ((8, 10, 128), np.float32),
        NOISY_VISUAL_FILE: ((8, 10, 7, 7, 512), np.float32),
        NOISY_LABELS_FILE: ((8, 29), np.float32),
        CLOSS_FILE: ((64, 10), np.float32),
        VISUAL_VEC_FILE: ((64, 10, 512), np.float32),
    }
    orders = [*ORDER_FILES.values(), *MATCH_ORDER_FILES.values()]
    assert sorted(p.name for p in tiny_ave.iterdir()) == sorted([*expected, *orders])
    for name, (shape, dtype) in expected.items():
        with h5py.File(tiny_ave / name, 'r') as f:
            assert list(f) == [FEATURE_KEY]
            assert (f[FEATURE_KEY].shape, f[FEATURE_KEY].dtype) == (shape, dtype), name
    for name in orders:
        with h5py.File(tiny_ave / name, 'r') as f:
            assert list(f) == [ORDER_KEY] and f[ORDER_KEY].dtype == np.int64


def test_labels_are_one_hot_and_background_videos_have_no_event(tiny_ave):
    labels, mil_labels = read(tiny_ave / LABELS_FILE), read(tiny_ave / MIL_LABELS_FILE)
    assert set(np.unique(labels)) == {0, 1} and (labels.sum(-1) == 1).all()
    assert (mil_labels.sum(-1) == 1).all() and (mil_labels[:, AVE.num_classes] == 0).all()
    event = labels[..., AVE.num_classes] == 0
    assert (labels.argmax(-1)[event] == mil_labels.argmax(-1)[:, None].repeat(10, 1)[event]).all()
    noisy = read(tiny_ave / NOISY_LABELS_FILE)
    assert (noisy.argmax(-1) == AVE.num_classes).all() and (noisy.sum(-1) == 1).all()


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
    assert a.keys() == b.keys() == c.keys() and len(a) == 15
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    for name in FEATURE_FILES:
        assert not np.array_equal(a[name], c[name])


def test_class_sizes_are_exactly_the_real_ones_at_full_size(full_plan):
    counts = np.bincount(full_plan.classes, minlength=AVE.num_classes)
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
    share = np.array([full[full_plan.classes == c].mean() for c in range(AVE.num_classes)])
    assert np.abs(share - synthetic.FULL_LENGTH_SHARE).max() < 0.15
    assert np.corrcoef(share, synthetic.FULL_LENGTH_SHARE)[0, 1] > 0.9


def test_full_size_splits_are_the_real_sizes_and_hold_every_class(full_plan):
    assert {s: len(o) for s, o in full_plan.orders.items()} == synthetic.REAL_SPLIT_SIZES
    for order in full_plan.orders.values():
        assert len(np.unique(full_plan.classes[order])) == AVE.num_classes
    assert len(full_plan.noisy_classes) == synthetic.REAL_BACKGROUND


@pytest.mark.parametrize('videos, sizes', [(3, (1, 1, 1)), (64, (52, 6, 6)), (1000, (806, 97, 97))])
def test_other_sizes_split_proportionally(videos, sizes):
    assert tuple(synthetic.split_sizes(videos).values()) == sizes


def test_full_size_splits_hold_each_class_in_proportion(full_plan):
    counts = np.bincount(full_plan.classes, minlength=AVE.num_classes)
    for split, order in full_plan.orders.items():
        in_split = np.bincount(full_plan.classes[order], minlength=AVE.num_classes)
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
    event = labels[..., AVE.num_classes] == 0  # (N, 10)
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


# ----------------------------------------------------------------------------- other sizes

# A set of 5 classes, 6 segments per video, float16 features: 12 videos, 2 background.
OTHER = {'videos': 12, 'background': 2, 'seed': 4, 'classes': 5, 'segments': 6}


@pytest.fixture(scope='module')
def other_sizes(tmp_path_factory):
    """Folder of the OTHER set, written through the command line (in this process)."""
    out = tmp_path_factory.mktemp('other_sizes')
    synthetic.main(['--out', str(out), '--videos', '12', '--background', '2', '--seed', '4',
                    '--classes', '5', '--segments', '6', '--dtype', 'float16'])
    return out


def test_other_sizes_have_their_shapes_and_dtypes(other_sizes):
    expected = {
        AUDIO_FILES[0]: ((12, 6, 128), np.float16),
        VISUAL_FILE: ((12, 6, 7, 7, 512), np.float16),
        LABELS_FILE: ((12, 6, 6), np.float32),
        MIL_LABELS_FILE: ((12, 6), np.float32),
        NOISY_AUDIO_FILE: ((2, 6, 128), np.float16),
        NOISY_VISUAL_FILE: ((2, 6, 7, 7, 512), np.float16),
        NOISY_LABELS_FILE: ((2, 6), np.float32),
    }
    assert sorted(p.name for p in other_sizes.iterdir()) == sorted(
        [*expected, *ORDER_FILES.values(), CLASSES_FILE, CLOSS_FILE, VISUAL_VEC_FILE,
         *MATCH_ORDER_FILES.values()])
    files = read_all(other_sizes)
    for name, (shape, dtype) in expected.items():
        assert (files[name].shape, files[name].dtype) == (shape, dtype), name
    rows = np.concatenate([files[name] for name in ORDER_FILES.values()])
    assert sorted(rows.tolist()) == list(range(12))


def test_other_sizes_name_their_classes_in_label_column_order(other_sizes):
    assert (other_sizes / CLASSES_FILE).read_text() == ''.join(
        f'synthetic class {c}\n' for c in range(5))


def test_other_sizes_labels_are_one_hot_with_background_last(other_sizes):
    labels, mil_labels = read(other_sizes / LABELS_FILE), read(other_sizes / MIL_LABELS_FILE)
    assert (labels.sum(-1) == 1).all() and (mil_labels.sum(-1) == 1).all()
    assert (mil_labels[:, 5] == 0).all()  # column 5 = background
    event = labels[..., 5] == 0  # (12, 6)
    assert event.any(1).all()  # every video has an event, inside its 6 segments
    video_class = mil_labels.argmax(-1)[:, None].repeat(6, 1)
    np.testing.assert_array_equal(labels.argmax(-1)[event], video_class[event])
    # Each event is one run of segments [start, end).
    assert (np.diff(event.astype(int), axis=1) != 0).sum(1).max() <= 2
    assert (read(other_sizes / NOISY_LABELS_FILE).argmax(-1) == 5).all()


def test_cli_sizes_and_dtype_reach_the_files(other_sizes, tmp_path):
    summary = synthetic.generate(tmp_path, **OTHER, dtype='float16', progress=False)
    assert (summary['classes'], summary['segments'], summary['dtype']) == (5, 6, 'float16')
    assert summary['splits'] == {'train': 10, 'val': 1, 'test': 1}
    cli, api = read_all(other_sizes), read_all(tmp_path)
    for name in api:
        np.testing.assert_array_equal(cli[name], api[name])


def test_float16_features_are_the_float32_ones_rounded(tmp_path):
    for dtype in ('float16', 'float32'):
        synthetic.generate(tmp_path / dtype, videos=3, background=1, segments=3, dtype=dtype,
                           progress=False)
    for name in FEATURE_FILES:
        half, single = read(tmp_path / 'float16' / name), read(tmp_path / 'float32' / name)
        np.testing.assert_array_equal(half, single.astype(np.float16))


def test_float16_refuses_values_it_cannot_hold(tmp_path):
    # A huge noise gives visual values beyond float16's 65504.
    with pytest.raises(ValueError, match='does not fit float16'):
        synthetic.generate(tmp_path, videos=3, background=1, segments=2, dtype='float16',
                           noise=1e6, progress=False)


def test_explicit_28_classes_only_adds_the_ave_class_names(tmp_path):
    explicit = synthetic.generate(tmp_path / 'a', videos=3, background=1, classes=28,
                                  progress=False)
    default = synthetic.generate(tmp_path / 'b', videos=3, background=1, progress=False)
    assert explicit['classes'] == default['classes'] == 28
    assert (tmp_path / 'a' / CLASSES_FILE).read_text().splitlines() == list(AVE.class_names)
    assert not (tmp_path / 'b' / CLASSES_FILE).exists()  # the default: the release's files only
    a, b = read_all(tmp_path / 'a'), read_all(tmp_path / 'b')
    assert a.keys() == b.keys() and len(a) == 15
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize('segments', [2, 5, 20])
def test_other_segment_counts_keep_the_event_statistics(segments):
    plan = synthetic.make_plan(600, seed=2, num_segments=segments)
    lengths = plan.ends - plan.starts
    assert plan.starts.min() >= 0 and plan.ends.max() <= segments and lengths.min() >= 1
    assert plan.audible.shape == plan.visible.shape == (600, segments)
    assert plan.noisy_audible.shape[1] == segments
    # About the real shares: 66% full-length, 83% event segments.
    assert abs((lengths == segments).mean() - 0.664) < 0.05
    assert abs(lengths.mean() / segments - 0.83) < 0.04
    labels, _ = plan.labels()
    assert labels.shape == (600, segments, AVE.num_classes + 1)


def test_ten_segments_keep_the_real_length_counts_and_others_rebin_them():
    assert synthetic.partial_length_counts(10) is synthetic.PARTIAL_LENGTH_COUNTS
    counts = synthetic.partial_length_counts(20)
    assert min(counts) >= 3 and max(counts) <= 19  # no very short events, as in AVE
    assert sum(counts.values()) == pytest.approx(sum(synthetic.PARTIAL_LENGTH_COUNTS.values()))
    assert list(synthetic.partial_length_counts(2)) == [1]


def test_other_class_counts_have_equal_sizes_and_as_many_prototypes():
    plan = synthetic.make_plan(100, background=30, seed=1, num_classes=7)
    counts = np.bincount(plan.classes, minlength=7)
    assert len(counts) == 7 and counts.max() - counts.min() <= 1
    assert set(plan.noisy_classes.tolist()) <= set(range(7))
    _, mil_labels = plan.labels()
    assert mil_labels.shape == (100, 8)
    prototypes = synthetic.Prototypes.sample(1, 7)
    assert prototypes.audio.shape == (7, 128) and prototypes.visual.shape == (7, 512)


def test_long_videos_are_generated_in_smaller_blocks():
    # 40 segments: blocks of 32 * 10 / 40 = 8 videos, so a block stays the same size.
    plan = synthetic.make_plan(20, seed=0, num_segments=40)
    prototypes = synthetic.Prototypes.sample(0)
    blocks = synthetic._feature_blocks(synthetic.audio_features, plan.classes, plan.audible,
                                       prototypes, 1.0, 0, 0, tqdm(disable=True),
                                       np.dtype(np.float32))
    assert [block.shape for block in blocks] == [(8, 40, 128), (8, 40, 128), (4, 40, 128)]


@pytest.mark.parametrize('args, message', [
    (['--videos', '5', '--classes', '1'], 'need at least 2 event classes, got 1'),
    (['--videos', '5', '--segments', '1'], 'need at least 2 segments per video, got 1'),
    (['--annotations', ANNOTATIONS_FILE, '--classes', '5'], 'annotations have the 28 AVE classes'),
    (['--annotations', ANNOTATIONS_FILE, '--segments', '6'], 'and 10 segments per video'),
])
def test_bad_sizes_are_one_line_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # where the one-line Annotations.txt is
    (tmp_path / ANNOTATIONS_FILE).write_text('Bark&a&good&0&10\n')
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(['--out', 'out', *args])
    text = str(exit_info.value.code)
    assert text.startswith('dataset.synthetic: error: ') and message in text
    assert len(text.splitlines()) == 1
    assert not (tmp_path / 'out').exists()  # refused before anything is written


@pytest.mark.parametrize('args, message', [
    (['--dtype', 'float8'], "invalid choice: 'float8'"),
    (['--float64', '--dtype', 'float16'], 'not allowed with argument --float64'),
])
def test_bad_dtype_flags_are_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        synthetic.main(['--out', str(tmp_path / 'out'), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('kwargs, message', [
    ({'dtype': 'int8'}, 'dtype must be one of float16, float32, float64'),
    ({'dtype': 'float16', 'float64': True}, 'float64 contradicts dtype float16'),
    ({'classes': 0}, 'at least 2 event classes'),
])
def test_bad_generate_arguments_are_refused_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate(tmp_path / 'out', videos=5, progress=False, **kwargs)
    assert not (tmp_path / 'out').exists()


def test_float64_flag_and_dtype_float64_are_the_same(tmp_path):
    assert synthetic.feature_dtype('float64') == synthetic.feature_dtype(float64=True) == np.float64
    assert synthetic.feature_dtype('float64', float64=True) == np.float64
    assert synthetic.feature_dtype() == np.float32
