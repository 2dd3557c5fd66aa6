"""Synthetic data in the exact AVE layout, with a learnable audio-visual event signal.

    python -m dataset.synthetic --out DIR [--videos N | --annotations PATH] [--seed S]
                                [--dtype {float16,float32,float64} | --float64]
                                [--background M] [--noise X] [--classes C] [--segments T]

writes the ten files of the AVE feature release (names, keys, shapes and dtypes of
dataset/layout.py) and the files of cross-modality localization (labels_closs.h5,
visual_feature_vec.h5: the maps averaged over their positions, and the three match order
files, whose test videos all have a partial event), so every part of the project runs
without the 8 GB real features.
By default the sets have the release's sizes (28 classes, 10 segments per video) and its
statistics. `--classes C` and `--segments T` write sets of other sizes in the same layout:
label width C + 1 (last column background), (N, T, ...) features, and a classes.txt
naming the C classes; `--dtype float16` halves the disk of a large set.

The signal. Each video has a class c and an event interval [start, end). A segment is an
audio-visual event when c is both audible and visible in it; every other segment of an
event video is, with equal probability, audible only (off-screen sound), visible only
(silent object) or neither, so neither modality alone tells event from background.
Background-only videos (`*_noisy.h5`) have no event segment at all. Audio is
ReLU(class audio prototype when audible + noise), rescaled to VGGish's per-segment
norm; the visual map is ReLU(per-video scene clutter + noise, plus the class visual
prototype on a rectangle of cells that may drift by a cell, when visible). Prototypes
are random per seed; `noise` sets how hard the task is.

Everything except the feature values (classes, intervals, audible/visible flags, splits)
comes from `make_plan`, which is cheap, so statistics can be checked without features.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from core.atomic import write_text
from core.errors import UserError
from dataset.h5io import write_h5, write_h5_chunked
from dataset.labels import build_labels, event_labels, event_segments, read_annotations
from dataset.layout import (AUDIO_FILES, AVE, CLASSES_FILE, CLOSS_FILE, FEATURE_KEY,
                            LABELS_FILE, MATCH_ORDER_FILES, MIL_LABELS_FILE, NOISY_AUDIO_FILE,
                            NOISY_LABELS_FILE, NOISY_VISUAL_FILE, ORDER_FILES, ORDER_KEY,
                            VISUAL_FILE, VISUAL_VEC_FILE)

# --- Facts of the real AVE release (counted in Annotations.txt and the order files) ---
REAL_VIDEOS = 4143
REAL_BACKGROUND = 178  # rows of the *_noisy.h5 files
REAL_SPLIT_SIZES = {'train': 3339, 'val': 402, 'test': 402}
# Videos per class (index = class); from Annotations.txt.
CLASS_COUNTS = (188, 176, 171, 184, 188, 175, 178, 187, 172, 163, 182, 138, 102, 99,
                186, 176, 160, 183, 100, 83, 69, 160, 60, 64, 180, 109, 154, 156)
# Share of each class's videos whose event spans all 10 segments; from Annotations.txt.
FULL_LENGTH_SHARE = (0.76, 0.27, 0.2, 0.74, 0.45, 0.55, 0.63, 0.82, 0.94, 0.9, 0.63, 0.84,
                     0.68, 0.79, 0.96, 0.9, 0.96, 0.97, 0.8, 0.39, 0.52, 0.6, 0.28, 0.17,
                     0.16, 0.43, 0.69, 0.85)
# The share over all videos (0.66): every class's share in sets of other class counts.
MEAN_FULL_LENGTH_SHARE = float(np.average(FULL_LENGTH_SHARE, weights=CLASS_COUNTS))
# Lengths (in segments) of the events shorter than 10; from Annotations.txt (no length 1).
PARTIAL_LENGTH_COUNTS = {2: 214, 3: 220, 4: 217, 5: 196, 6: 200, 7: 139, 8: 111, 9: 95}
# Where those shorter events lie; from Annotations.txt: 499 start at segment 0, 646 end
# at segment 10, 247 lie strictly inside (82% touch an edge).
PARTIAL_AT_START, PARTIAL_AT_END = 0.36, 0.46
# VGGish audio (audio_feature_noisy.h5): ~65% zeros, per-segment L2 norm 3.2 +- 0.6.
AUDIO_ZERO_SHARE = 0.65
AUDIO_NORM_MEAN, AUDIO_NORM_STD = 3.2, 0.6

# --- Choices of the generator ---
NOISE = 2.0  # default noise-to-signal ratio; see `generate`
# The object covers 2x2 to 4x4 cells of the 7x7 map and moves by one cell between two
# segments with this probability.
OBJECT_SIZES = (2, 4)
DRIFT_PROB = 0.3
# Visual pre-activation = VISUAL_BIAS + SCENE_SCALE * scene + noise * N(0, 1) (+ the
# prototype on the object's cells): mostly zero after ReLU, like pool5 maps.
VISUAL_BIAS = -1.0
SCENE_SCALE = 0.5
CHUNK_VIDEOS = 32  # videos generated per block: 32 x 10 x 7 x 7 x 512 float32 = 32 MB
# (with T segments per video, CHUNK_VIDEOS * 10 / T videos, so a block stays ~32 MB)
FEATURE_DTYPES = ('float16', 'float32', 'float64')  # what the features may be stored as
# Independent random streams, so that e.g. the labels do not depend on the feature sizes.
PLAN_STREAM, PROTOTYPE_STREAM, FEATURE_STREAM, MATCH_STREAM = 0, 1, 2, 3

# Audio pre-activations are N(AUDIO_BIAS, 1), so ReLU zeroes AUDIO_ZERO_SHARE of them.
AUDIO_BIAS = NormalDist().inv_cdf(1 - AUDIO_ZERO_SHARE)
# What an off-event segment shows (0 = neither modality).
AUDIBLE_ONLY, VISIBLE_ONLY = 1, 2


@dataclass
class Plan:
    """Everything random about a synthetic set except the feature values.

    N event videos (rows of audio_feature.h5 etc.) and M background videos (rows of the
    *_noisy.h5 files), C event classes and T segments per video (AVE: 28 and 10). For an
    event video, segments [start, end) are audible and visible.
    """
    classes: np.ndarray  # (N,) int64 class of each video
    starts: np.ndarray  # (N,) int64 first event segment
    ends: np.ndarray  # (N,) int64 one past the last event segment
    audible: np.ndarray  # (N, T) bool: the class's sound is present
    visible: np.ndarray  # (N, T) bool: the class's object is on screen
    orders: dict  # split -> (n_split,) int64 rows, shuffled
    noisy_classes: np.ndarray  # (M,) int64 class heard/seen in the background video
    noisy_audible: np.ndarray  # (M, T) bool, never together with noisy_visible
    noisy_visible: np.ndarray  # (M, T) bool
    num_classes: int = AVE.num_classes  # C
    num_segments: int = AVE.num_segments  # T

    def labels(self):
        """`(labels (N, T, C + 1), mil_labels (N, C + 1))` float32, as `dataset.labels`
        builds them."""
        return event_labels(self.classes, self.starts, self.ends, self.num_classes,
                            self.num_segments)


def _quota(total, weights):
    """Split `total` into integers proportional to `weights` (largest remainder)."""
    share = total * np.asarray(weights, dtype=np.float64) / np.sum(weights)
    counts = np.floor(share).astype(np.int64)
    counts[np.argsort(counts - share, kind='stable')[:total - counts.sum()]] += 1
    return counts


def _shares(counts):
    """Probabilities proportional to `counts`."""
    counts = np.asarray(list(counts), dtype=np.float64)
    return counts / counts.sum()


def class_statistics(num_classes):
    """`(class sizes, full-length shares)`, one value per class, for `num_classes` classes.

    For AVE's 28: CLASS_COUNTS and FULL_LENGTH_SHARE. For any other count there are no
    real classes to follow: equal sizes, and MEAN_FULL_LENGTH_SHARE for every class.
    """
    if num_classes == AVE.num_classes:
        return CLASS_COUNTS, FULL_LENGTH_SHARE
    return (1,) * num_classes, (MEAN_FULL_LENGTH_SHARE,) * num_classes


def partial_length_counts(num_segments):
    """{length: weight} of events shorter than `num_segments` segments (lengths 1..T-1).

    For AVE's 10 segments: PARTIAL_LENGTH_COUNTS. For T segments: the same histogram
    re-binned by share of the video. Real length L covers the shares [L - 1/2, L + 1/2) / 10
    and length l of T covers [l - 1/2, l + 1/2) / T; l gets each real count in proportion
    to the overlap. So events keep about the real share of their video (and, as in AVE,
    very short ones are rare), whatever T. Lengths of weight 0 are left out.
    """
    if num_segments == AVE.num_segments:
        return PARTIAL_LENGTH_COUNTS
    weights = {}
    for length in range(1, num_segments):
        low, high = (length - 0.5) / num_segments, (length + 0.5) / num_segments
        weight = 0.0
        for real, count in PARTIAL_LENGTH_COUNTS.items():
            overlap = (min(high, (real + 0.5) / AVE.num_segments)
                       - max(low, (real - 0.5) / AVE.num_segments))
            weight += count * max(overlap, 0.0) * AVE.num_segments  # the real bin's width is 1/10
        if weight > 0:
            weights[length] = weight
    return weights


def sample_events(videos, rng, num_classes=AVE.num_classes, num_segments=AVE.num_segments):
    """Sample `(classes, starts, ends)`, each (videos,) int64, with the real AVE statistics.

    Class sizes are proportional to CLASS_COUNTS (exactly the real ones for 4143 videos);
    each video spans all T = `num_segments` segments with its class's FULL_LENGTH_SHARE,
    else its length follows PARTIAL_LENGTH_COUNTS and it touches the start or end with the
    real shares. For other class or segment counts, see `class_statistics` and
    `partial_length_counts`.
    """
    class_sizes, full_share = class_statistics(num_classes)
    partial = partial_length_counts(num_segments)
    classes = rng.permutation(np.repeat(np.arange(num_classes), _quota(videos, class_sizes)))
    full = rng.random(videos) < np.asarray(full_share)[classes]
    lengths = rng.choice(list(partial), size=videos, p=_shares(partial.values()))
    place = rng.random(videos)
    at_start = place < PARTIAL_AT_START
    # Length T - 1 cannot lie strictly inside T segments; such events go to the end, as
    # most real ones do (74 of 95 of length 9).
    at_end = ~at_start & ((place < PARTIAL_AT_START + PARTIAL_AT_END)
                          | (lengths > num_segments - 2))
    inside_start = rng.integers(1, np.maximum(num_segments - lengths, 2))
    starts = np.where(at_start, 0, np.where(at_end, num_segments - lengths, inside_start))
    starts = np.where(full, 0, starts).astype(np.int64)
    ends = np.where(full, num_segments, starts + lengths).astype(np.int64)
    return classes.astype(np.int64), starts, ends


def sample_modalities(starts, ends, rng, num_segments=AVE.num_segments):
    """Sample `(audible, visible)`, each (N, T) bool, for events [starts, ends).

    Event segments are audible and visible; every other segment is audible only, visible
    only or neither, with equal probability (never both).
    """
    segment = np.arange(num_segments)
    in_event = (segment >= np.asarray(starts)[:, None]) & (segment < np.asarray(ends)[:, None])
    kind = rng.integers(0, 3, size=in_event.shape)  # neither / AUDIBLE_ONLY / VISIBLE_ONLY
    return in_event | (kind == AUDIBLE_ONLY), in_event | (kind == VISIBLE_ONLY)


def split_sizes(videos):
    """Train/val/test sizes: the real 3339/402/402 scaled to `videos` (>= 3), each >= 1."""
    if videos < 3:
        raise ValueError(f'need at least 3 videos for train/val/test, got {videos}')
    held_out = max(1, round(videos * REAL_SPLIT_SIZES['val'] / REAL_VIDEOS))
    held_out = min(held_out, (videos - 1) // 2)
    return {'train': videos - 2 * held_out, 'val': held_out, 'test': held_out}


def split_orders(classes, rng, num_classes=AVE.num_classes):
    """Shuffled, disjoint int64 row arrays per split, covering range(len(classes)).

    Stratified by class: val, then test, are filled one video at a time, each time from
    a class the split lacks if there is one, else from the class furthest below its
    proportional share, keeping (where possible) a video of each class for the splits
    still to fill. So every split holds as many classes as its size allows and, at full
    size, about the same share of each class. Train takes the rest.
    """
    classes = np.asarray(classes)
    sizes = split_sizes(len(classes))
    counts = np.bincount(classes, minlength=num_classes)
    # Videos of each class in random order; a split takes them from the end.
    pools = [list(rng.permutation(np.flatnonzero(classes == c))) for c in range(num_classes)]
    orders = {}
    for split, later_splits in (('val', 2), ('test', 1)):
        target = counts * sizes[split] / len(classes)
        taken = np.zeros(num_classes)
        picked = []
        for _ in range(sizes[split]):
            left = np.array([len(pool) for pool in pools])
            spare = left > later_splits
            eligible = spare if spare.any() else left > 0
            # Missing classes first, then the largest deficit; random among ties.
            priority = (taken == 0) * len(classes) + target - taken + 1e-3 * rng.random(num_classes)
            chosen = int(np.argmax(np.where(eligible, priority, -np.inf)))
            picked.append(pools[chosen].pop())
            taken[chosen] += 1
        orders[split] = rng.permutation(np.array(picked, dtype=np.int64))
    train = rng.permutation(np.concatenate([np.array(pool, dtype=np.int64) for pool in pools]))
    return {'train': train, 'val': orders['val'], 'test': orders['test']}


def match_orders(starts, ends, num_segments, seed):
    """The match splits of cross-modality localization, like the release's: test and val of
    the localization splits' sizes, the test videos all with a partial event (at least 2
    segments where there are enough such videos, as in the release), val half such videos
    where there are enough, train the rest, shuffled."""
    rng = np.random.default_rng([seed, MATCH_STREAM])
    sizes = split_sizes(len(starts))
    length = ends - starts
    partial = np.flatnonzero((length >= 2) & (length < num_segments))
    if len(partial) < sizes['test']:
        partial = np.flatnonzero((length >= 1) & (length < num_segments))
    if len(partial) == 0:
        raise ValueError('no video has a partial event, which cross-modality localization '
                         'tests on; make more videos')
    partial = rng.permutation(partial)
    test = partial[:sizes['test']]
    # val: half of it partial events (the release's has 198 of 402), the rest of any kind
    val_partial = partial[sizes['test']:sizes['test'] + (sizes['val'] + 1) // 2]
    taken = np.concatenate([test, val_partial])
    rest = rng.permutation(np.setdiff1d(np.arange(len(starts)), taken))
    more = sizes['val'] - len(val_partial)
    val = rng.permutation(np.concatenate([val_partial, rest[:more]]))
    return {'train': rest[more:], 'val': val, 'test': test}


def default_background(videos):
    """Background-video count for `videos` event videos: the real 178 per 4143, at least 2."""
    return max(2, round(REAL_BACKGROUND * videos / REAL_VIDEOS))


def check_sizes(num_classes, num_segments):
    """Raise `ValueError` unless there are >= 2 event classes and >= 2 segments per video."""
    # One class would leave nothing to classify; one segment nothing to localise.
    if num_classes < 2:
        raise ValueError(f'need at least 2 event classes, got {num_classes}')
    if num_segments < 2:
        raise ValueError(f'need at least 2 segments per video, got {num_segments}')


def make_plan(videos=REAL_VIDEOS, background=None, seed=0, annotations=None,
              num_classes=AVE.num_classes, num_segments=AVE.num_segments):
    """Draw the `Plan` of a synthetic set; cheap (no features).

    With `annotations` (a list of `dataset.labels.Annotation`), the classes and intervals
    are those rows' (N = len(annotations), `videos` is ignored), so `plan.labels()` equals
    `dataset.labels.build_labels(annotations)`; they have AVE's 28 classes and 10 segments.
    `background` defaults to `default_background(N)`. `num_classes` event classes and
    `num_segments` segments per video (both >= 2) default to AVE's; see `sample_events`
    for the statistics of other sizes. The same arguments always give the same plan.
    """
    check_sizes(num_classes, num_segments)
    rng = np.random.default_rng([seed, PLAN_STREAM])
    if annotations is not None:
        if (num_classes, num_segments) != (AVE.num_classes, AVE.num_segments):
            raise ValueError(f'annotations have the {AVE.num_classes} AVE classes and '
                             f'{AVE.num_segments} segments per video; got {num_classes} classes '
                             f'and {num_segments} segments')
        _, mil_labels = build_labels(annotations)
        classes = mil_labels.argmax(1).astype(np.int64)
        starts = np.array([a.start for a in annotations], dtype=np.int64)
        ends = np.array([a.end for a in annotations], dtype=np.int64)
    else:
        classes, starts, ends = sample_events(videos, rng, num_classes, num_segments)
    background = default_background(len(classes)) if background is None else background
    if background < 1:
        raise ValueError(f'need at least 1 background video, got {background}')
    audible, visible = sample_modalities(starts, ends, rng, num_segments)
    orders = split_orders(classes, rng, num_classes)
    class_sizes, _ = class_statistics(num_classes)
    noisy_classes = rng.choice(num_classes, size=background, p=_shares(class_sizes))
    no_event = np.zeros(background, dtype=np.int64)
    noisy_audible, noisy_visible = sample_modalities(no_event, no_event, rng, num_segments)
    return Plan(classes, starts, ends, audible, visible, orders,
                noisy_classes.astype(np.int64), noisy_audible, noisy_visible,
                num_classes, num_segments)


@dataclass
class Prototypes:
    """Per-class feature patterns (pre-activation): what 'class c is audible/visible' adds."""
    audio: np.ndarray  # (C, 128) float32
    visual: np.ndarray  # (C, 512) float32

    @classmethod
    def sample(cls, seed, num_classes=AVE.num_classes):
        rng = np.random.default_rng([seed, PROTOTYPE_STREAM])
        return cls(rng.standard_normal((num_classes, AVE.audio_dim), dtype=np.float32),
                   rng.standard_normal((num_classes, AVE.visual_shape[-1]), dtype=np.float32))


def audio_features(classes, audible, prototypes, noise, rng):
    """VGGish-like audio (B, T, 128) float32: >= 0, ~65% zeros, L2 norm ~3.2 per segment.

    Pre-activation = (prototype of the class if audible + noise * N(0, 1)), scaled to unit
    variance so the zero share does not depend on `noise`, plus AUDIO_BIAS; then ReLU.
    """
    audible = np.asarray(audible, dtype=np.float32)[..., None]  # (B, T, 1)
    z = rng.standard_normal(audible.shape[:2] + (AVE.audio_dim,), dtype=np.float32)
    z *= noise
    z += audible * prototypes.audio[classes][:, None, :]
    variance = audible + np.float32(noise) ** 2
    z /= np.sqrt(np.where(variance > 0, variance, 1))  # noise 0: silent segments stay 0
    z += np.float32(AUDIO_BIAS)
    np.maximum(z, 0, out=z)
    norm = rng.normal(AUDIO_NORM_MEAN, AUDIO_NORM_STD, size=z.shape[:2] + (1,))
    z *= (np.maximum(norm, 0.5) / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
          ).astype(np.float32)
    return z


def object_masks(videos, rng, num_segments=AVE.num_segments):
    """Cells covered by each video's object, (videos, T, 7, 7) bool.

    A rectangle of 2x2..4x4 cells at a random place, moving by one cell between two
    segments with probability DRIFT_PROB, always inside the map.
    """
    grid = AVE.visual_shape[0]
    low, high = OBJECT_SIZES
    size = rng.integers(low, high + 1, size=(videos, 2))  # (videos, 2) rows, cols
    corner = rng.integers(0, grid - size + 1)  # (videos, 2)
    steps = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
    corners = [corner]
    for _ in range(num_segments - 1):
        move = steps[rng.integers(0, 4, size=videos)] * (rng.random(videos) < DRIFT_PROB)[:, None]
        corners.append(np.clip(corners[-1] + move, 0, grid - size))
    corners = np.stack(corners, axis=1)[..., None]  # (videos, T, 2, 1)
    cells = np.arange(grid)
    inside = (cells >= corners) & (cells < corners + size[:, None, :, None])  # (videos, T, 2, 7)
    return inside[:, :, 0, :, None] & inside[:, :, 1, None, :]


def visual_features(classes, visible, prototypes, noise, rng):
    """VGG pool5-like maps (B, T, 7, 7, 512) float32, >= 0 and mostly zero.

    Pre-activation = VISUAL_BIAS + scene clutter (per video) + noise * N(0, 1),
    plus the class's visual prototype on the object's cells where `visible`; then ReLU.
    """
    classes, visible = np.asarray(classes), np.asarray(visible)
    (b, segments), channels = visible.shape, AVE.visual_shape[-1]
    z = rng.standard_normal((b, segments) + AVE.visual_shape, dtype=np.float32)
    z *= np.float32(noise)
    scene = rng.standard_normal((b, channels), dtype=np.float32) * np.float32(SCENE_SCALE)
    z += (scene + np.float32(VISUAL_BIAS))[:, None, None, None, :]
    shown = object_masks(b, rng, segments) & visible[..., None, None]  # (B, T, 7, 7)
    video, segment, row, col = np.nonzero(shown)
    z[video, segment, row, col] += prototypes.visual[classes[video]]
    np.maximum(z, 0, out=z)
    return z


def check_fits(features, dtype):
    """Raise `ValueError` if `features` hold a value that float16 `dtype` cannot store.

    float16 holds up to 65504 (the features are ReLU outputs of a few units, far below,
    unless `noise` is huge); float32 and float64 hold every float32 value.
    """
    if dtype != np.float16:
        return
    limit = float(np.finfo(np.float16).max)  # a Python float: compared without a cast
    largest = max(float(features.max(initial=0)), -float(features.min(initial=0)))
    if not largest <= limit:  # also catches NaN
        raise ValueError(f'a feature value ({largest:.4g}) does not fit float16 (at most '
                         f'{limit:.0f}); store float32 or lower the noise')


def _feature_blocks(make, classes, present, prototypes, noise, seed, stream, bar, dtype):
    """Yield `make(...)` for consecutive blocks of videos, each with its own RNG.

    A block holds CHUNK_VIDEOS videos of 10 segments, proportionally fewer (at least one)
    of longer videos and more of shorter ones, so it stays about the same size. Each block
    is checked to fit the stored `dtype` (`check_fits`).
    """
    videos = max(1, CHUNK_VIDEOS * AVE.num_segments // present.shape[1])
    for block, lo in enumerate(range(0, len(classes), videos)):
        rng = np.random.default_rng([seed, FEATURE_STREAM, stream, block])
        features = make(classes[lo:lo + videos], present[lo:lo + videos], prototypes, noise, rng)
        check_fits(features, dtype)
        bar.update(len(features))
        yield features


def _pooling(blocks, pooled, dtype):
    """Pass `blocks` of (n, T, H, W, V) maps on, appending the means over H x W of the maps
    as stored (in `dtype`) to `pooled`."""
    for block in blocks:
        pooled.append(block.astype(dtype).astype(np.float32).mean((2, 3)))
        yield block


def feature_dtype(dtype=None, float64=False):
    """The numpy dtype of the stored features: `dtype` (a name of FEATURE_DTYPES or a numpy
    float type), else float64 with `float64` (the older flag), else float32."""
    if dtype is None:
        return np.dtype(np.float64 if float64 else np.float32)
    try:
        name = np.dtype(dtype).name
    except TypeError:  # not a dtype at all, e.g. 'float8'
        name = None
    if name not in FEATURE_DTYPES:
        raise ValueError(f'dtype must be one of {", ".join(FEATURE_DTYPES)}, got {dtype!r}')
    if float64 and name != 'float64':
        raise ValueError(f'float64 contradicts dtype {name}; give one of them')
    return np.dtype(name)


def class_names(num_classes):
    """The names classes.txt gives `num_classes` synthetic classes, in label-column order.

    AVE's names for its 28 (such a set has AVE's class statistics, and a folder without
    classes.txt is read with these names), else 'synthetic class 0', 'synthetic class 1'...
    """
    if num_classes == AVE.num_classes:
        return AVE.class_names
    return tuple(f'synthetic class {c}' for c in range(num_classes))


def generate(out, videos=None, seed=0, float64=False, background=None, annotations=None,
             noise=NOISE, progress=True, classes=None, segments=AVE.num_segments, dtype=None):
    """Write a synthetic AVE set (the ten files of the release) into folder `out`.

    `videos` event videos (default 4143, the real count; with `annotations`, the path of
    an Annotations.txt, N is its row count and its classes and intervals are used, so
    labels.h5 equals what `python -m dataset.labels` builds). `background` background
    videos (default 178 per 4143). `classes` event classes (default None: AVE's 28, and no
    classes.txt; a number C >= 2: labels of width C + 1 and a classes.txt naming the C
    classes, see `class_names`) and `segments` T >= 2 per video (default 10): features
    (N, T, ...), labels (N, T, C + 1); see `sample_events` for the statistics of other
    sizes. Features are stored as `dtype` (float16, float32 or float64; default float32,
    or float64 like the release with `float64`); labels float32; orders int64. `noise` is
    the noise-to-signal ratio of the features: 0 is trivial, the default leaves a simple
    classifier well short of 100%. Deterministic in all arguments; memory stays bounded
    (blocks of CHUNK_VIDEOS videos of 10 segments). Returns a summary dict (counts, sizes,
    shares, dtype, seconds, bytes).
    """
    began = time.time()
    out = Path(out)
    if noise < 0:
        raise ValueError(f'noise must be >= 0, got {noise}')
    dtype = feature_dtype(dtype, float64)
    num_classes = AVE.num_classes if classes is None else classes
    check_sizes(num_classes, segments)
    if annotations is not None:
        if videos is not None:
            raise ValueError('give either videos or annotations, not both')
        annotations = read_annotations(annotations)
    plan = make_plan(REAL_VIDEOS if videos is None else videos, background, seed, annotations,
                     num_classes, segments)
    prototypes = Prototypes.sample(seed, num_classes)
    out.mkdir(parents=True, exist_ok=True)

    files = [LABELS_FILE, MIL_LABELS_FILE, *ORDER_FILES.values(), NOISY_LABELS_FILE]
    labels, mil_labels = plan.labels()  # (N, T, C + 1), (N, C + 1)
    write_h5(out / LABELS_FILE, FEATURE_KEY, labels)
    write_h5(out / MIL_LABELS_FILE, FEATURE_KEY, mil_labels)
    for split, order in plan.orders.items():
        write_h5(out / ORDER_FILES[split], ORDER_KEY, order)
    noisy_labels = np.zeros((len(plan.noisy_classes), num_classes + 1), dtype=np.float32)
    noisy_labels[:, num_classes] = 1.0  # the background column
    write_h5(out / NOISY_LABELS_FILE, FEATURE_KEY, noisy_labels)
    write_h5(out / CLOSS_FILE, FEATURE_KEY, event_segments(labels))
    for split, order in match_orders(plan.starts, plan.ends, segments, seed).items():
        write_h5(out / MATCH_ORDER_FILES[split], ORDER_KEY, order.astype(np.int64))
    files += [CLOSS_FILE, *MATCH_ORDER_FILES.values()]
    if classes is not None:  # asked for: name the classes (one per line, no background)
        write_text(out / CLASSES_FILE, ''.join(f'{name}\n' for name in class_names(classes)))
        files.append(CLASSES_FILE)
    else:  # a classes.txt of an earlier set in this folder would misname these classes
        (out / CLASSES_FILE).unlink(missing_ok=True)

    audio_shape, visual_shape = (segments, AVE.audio_dim), (segments,) + AVE.visual_shape
    features = [  # file, feature maker, classes, audible/visible flags, row shape
        (AUDIO_FILES[0], audio_features, plan.classes, plan.audible, audio_shape),
        (VISUAL_FILE, visual_features, plan.classes, plan.visible, visual_shape),
        (NOISY_AUDIO_FILE, audio_features, plan.noisy_classes, plan.noisy_audible, audio_shape),
        (NOISY_VISUAL_FILE, visual_features, plan.noisy_classes, plan.noisy_visible, visual_shape),
    ]
    pooled = []   # the visual maps averaged over their positions, block by block
    for stream, (name, make, video_classes, present, row_shape) in enumerate(features):
        with tqdm(total=len(video_classes), desc=name, unit='video', disable=not progress) as bar:
            blocks = _feature_blocks(make, video_classes, present, prototypes, noise, seed,
                                     stream, bar, dtype)
            if name == VISUAL_FILE:
                blocks = _pooling(blocks, pooled, dtype)
            write_h5_chunked(out / name, FEATURE_KEY, (len(video_classes),) + row_shape, dtype,
                             blocks)
    write_h5(out / VISUAL_VEC_FILE, FEATURE_KEY, np.concatenate(pooled).astype(dtype))

    files += [name for name, *_ in features] + [VISUAL_VEC_FILE]
    return {
        'out': str(out),
        'videos': len(plan.classes),
        'background': len(plan.noisy_classes),
        'classes': num_classes,
        'segments': segments,
        'splits': {split: len(order) for split, order in plan.orders.items()},
        'dtype': dtype.name,
        'noise': noise,
        'seed': seed,
        'event_segment_share': float(labels[..., :num_classes].sum(-1).mean()),
        'full_length_share': float(((plan.starts == 0) & (plan.ends == segments)).mean()),
        'bytes': sum((out / name).stat().st_size for name in files),
        'seconds': time.time() - began,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m dataset.synthetic', description=(
        'Write a synthetic data set in the exact layout of the AVE feature release.'))
    parser.add_argument('--out', type=Path, required=True, help='folder to write the files to')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--videos', type=int, help=f'event videos (default {REAL_VIDEOS})')
    source.add_argument('--annotations', type=Path,
                        help='use the classes and intervals of this Annotations.txt')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument('--dtype', choices=FEATURE_DTYPES,
                           help='how to store the features (default float32; float16 halves '
                                'the disk of a large set, float64 is the release\'s dtype)')
    precision.add_argument('--float64', action='store_true',
                           help='the same as --dtype float64')
    parser.add_argument('--background', type=int,
                        help=f'background-only videos (default {REAL_BACKGROUND} per '
                             f'{REAL_VIDEOS} videos, at least 2)')
    parser.add_argument('--noise', type=float, default=NOISE,
                        help=f'noise-to-signal ratio of the features (default {NOISE})')
    parser.add_argument('--classes', type=int,
                        help=f'event classes, at least 2 (default {AVE.num_classes}, with AVE\'s '
                             f'class sizes); when given, {CLASSES_FILE} names them')
    parser.add_argument('--segments', type=int, default=AVE.num_segments,
                        help=f'segments per video, at least 2 (default {AVE.num_segments})')
    args = parser.parse_args(argv)
    try:
        summary = generate(args.out, videos=args.videos, seed=args.seed, float64=args.float64,
                           background=args.background, annotations=args.annotations,
                           noise=args.noise, classes=args.classes, segments=args.segments,
                           dtype=args.dtype)
    except (OSError, ValueError, UserError) as e:   # UserError: a write failed
        raise SystemExit(f'dataset.synthetic: error: {e}') from None
    splits = '/'.join(str(size) for size in summary['splits'].values())
    print(f"{summary['videos']} videos ({splits} {'/'.join(summary['splits'])}) + "
          f"{summary['background']} background, {summary['classes']} classes, "
          f"{summary['segments']} segments, {summary['dtype']}, noise {summary['noise']}, "
          f"seed {summary['seed']}: {summary['event_segment_share']:.1%} event segments, "
          f"{summary['full_length_share']:.1%} full-length -> {summary['out']} "
          f"({summary['bytes'] / 2**30:.2f} GiB, {summary['seconds']:.0f} s)")


if __name__ == '__main__':
    main()
