"""An AVE data folder -> validated float32 (or float16) tensors on the training device.

`load_ave` checks every file it needs before reading any features, then reads only the
rows of the requested splits, converting them in chunks, so a float64 file is never held
in memory whole. `load_videos` does the same for a pair of feature files of new videos
(tools/predict.py). Batches are taken by indexing the resident tensors.
"""
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from dataset import layout as L
from core.errors import UserError

CHUNK_VIDEOS = 64   # videos converted per read: 64 x 2 MB of float64 visual features


class DataError(UserError):
    """A data folder that cannot be used as it is."""


@dataclass
class AVEData:
    """Features and labels of the loaded videos, all on one device.

    Row r of every tensor is one video; `splits[name]` holds the rows of a split in the
    order of its order file (for the weakly-supervised 'train' split: the training videos,
    then the background videos; for `load_videos`: 'videos', every row in file order).
    """
    audio: torch.Tensor          # (R, T, A): A = 128 in AVE
    visual: torch.Tensor         # (R, T, H, W, V): 7, 7, 512 in AVE
    segment: torch.Tensor        # (R, T) int64 class per segment, C = background; None if unknown
    video_class: torch.Tensor    # (R,) int64 event class of the video, -1 if it has none
    video_label: torch.Tensor    # (R, C + 1) float32 video label (mil_labels.h5), or (R, 0)
    splits: dict                 # name -> (N,) int64 rows
    source_rows: np.ndarray      # (R,) row in the data files; -1-m for background video m
    num_classes: int             # C: event classes (the label files' width - 1)
    file_videos: int             # videos in the data files (loaded or not)
    background_rows: torch.Tensor = field(default=None)  # rows of background videos

    def inputs(self, rows):
        """Model inputs of `rows` ((B,) int64 on the data's device), features as float32."""
        return self.audio[rows].float(), self.visual[rows].float()  # (B, T, A), (B, T, H, W, V)

    def targets(self, rows):
        """Training targets of `rows`: segment classes, video class and video label."""
        return {'segment': self.segment[rows], 'video_class': self.video_class[rows],
                'video_label': self.video_label[rows]}

    def num_videos(self, split):
        return len(self.splits[split])

    @property
    def sizes(self):
        """What a model needs to know of the data: {num_classes, audio_dim, visual_dim}."""
        return {'num_classes': self.num_classes, 'audio_dim': self.audio.shape[-1],
                'visual_dim': self.visual.shape[-1]}


# ----------------------------------------------------------------------------- checks

FEATURES = f'features come from {L.FEATURE_SOURCES}'
LABELS = ('label and order files come with the AVE release too, or are built from its '
          'Annotations.txt by `python -m dataset.labels`')
BACKGROUND = ('the background videos come with the same release; or pass --no_background to '
              'train without them')


def find_files(root, wanted):
    """{key: path} of the files `wanted` ({key: (name or (names, ...), where it comes from)};
    the first name present wins) in folder `root`. One DataError lists every missing file and
    where those come from."""
    found, missing = {}, {}
    for key, (names, source) in wanted.items():
        names = (names,) if isinstance(names, str) else names
        for n in names:
            if (root / n).exists() and not (root / n).is_file():
                raise DataError(f'{root / n} is a folder, not a file; the data folder needs '
                                f'the HDF5 file {n} there')
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            missing[' or '.join(names)] = source
        else:
            found[key] = path
    if missing:
        sources = '; '.join(dict.fromkeys(missing.values()))
        raise DataError(f"{', '.join(missing)} not found in data folder {root.resolve()}; {sources}")
    return found


# What h5py raises on a damaged file, depending on which of its structures is hit.
H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)


@contextlib.contextmanager
def reading(path):
    """Turn h5py's errors inside the block into a DataError naming the damaged file."""
    try:
        yield
    except H5_ERRORS as e:
        reason = str(e).strip("'").splitlines()[0][:160] if str(e) else type(e).__name__
        if 'unable to lock file' in reason:
            raise DataError(f'{path} is in use by another process, which holds its HDF5 file '
                            'lock; wait for that process to finish') from None
        raise DataError(f'{path} is not a readable HDF5 file (truncated or corrupt? {reason}); '
                        're-download or regenerate it') from None


def open_h5(path):
    with reading(path):
        return h5py.File(path, 'r')


def read_key(f, key):
    """Dataset `key` of open file `f`, or a DataError listing the keys it does have."""
    with reading(f.filename):
        if key not in f:
            present = ', '.join(str(k) for k in f.keys()) or 'none'
            raise DataError(f"{f.filename} has no key '{key}' (it has: {present}); AVE files "
                            f"store their array under '{key}'")
        ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{f.filename}: '{key}' is a group, not an array; AVE files store their "
                        f"array directly under '{key}'")
    return ds


def read_all(ds):
    """The whole array of dataset `ds` as numpy (labels and orders: small)."""
    with reading(ds.file.filename):
        return ds[()]


def check_shape(ds, tail, what):
    """Require ds.shape == (N, *tail); return N."""
    if ds.ndim != len(tail) + 1 or tuple(ds.shape[1:]) != tuple(tail):
        want = ', '.join(['N'] + [str(t) for t in tail])
        raise DataError(f'{ds.file.filename} has shape {ds.shape}, expected ({want}) {what}; '
                        'use the file of the AVE release (README, "Data layout") or regenerate it')
    return ds.shape[0]


def check_float(ds):
    if not np.issubdtype(ds.dtype, np.floating):
        raise DataError(f'{ds.file.filename} holds {ds.dtype} values; features must be floats, '
                        'as in the AVE release (any float dtype): regenerate or convert the file')


def check_same_count(counts):
    """counts: {path: N}; all must agree."""
    if len(set(counts.values())) > 1:
        listing = ', '.join(f'{Path(p).name}: {n}' for p, n in counts.items())
        raise DataError(f'files disagree on the number of videos ({listing}); they must come '
                        'from the same release or generator run')


def check_one_hot(labels, path, rows=None):
    """labels (N, C + 1) or (N, T, C + 1): exactly one 1 and otherwise 0 along the last axis.
    `rows` are the file rows of the N labels (default: 0..N-1), for the message."""
    if labels.dtype.kind not in 'biuf':
        raise DataError(f'{path} holds {labels.dtype} values; labels are numbers, one-hot 0/1 '
                        '(regenerate the file with python -m dataset.labels)')
    binary = (labels == 0) | (labels == 1)
    sums = labels.sum(-1)
    bad = ~(binary.all(-1) & (sums == 1))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        row = where[0] if rows is None else int(rows[where[0]])
        segment = f', segment {where[1]}' if len(where) > 1 else ''
        raise DataError(f'{path} is not one-hot at video row {row}{segment} (values sum to '
                        f'{float(sums[where]):g}); each row needs exactly one 1 among '
                        f'{labels.shape[-1]} columns')


def check_one_class(segment, num_classes, rows, path):
    """Every video's event segments (classes below `num_classes`) are of one class."""
    present = (segment[..., None] == np.arange(num_classes)).any(1)    # (R, C)
    mixed = np.flatnonzero(present.sum(1) > 1)
    if len(mixed):
        classes = np.flatnonzero(present[mixed[0]])
        raise DataError(f'{path} gives video row {int(rows[mixed[0]])} segments of two event '
                        f'classes ({int(classes[0])} and {int(classes[1])}); an AVE video has one '
                        'event class: fix its labels (python -m dataset.labels builds them)')


def read_order(path, num_videos):
    with open_h5(path) as f:
        order = read_all(read_key(f, L.ORDER_KEY))
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise DataError(f'{path} holds {order.dtype} of shape {order.shape}; expected a 1-D '
                        'array of integer row indices (regenerate the order files)')
    if len(order) == 0:
        raise DataError(f'{path} is empty; every split needs at least one video (regenerate the '
                        'order files)')
    bad = (order < 0) | (order >= num_videos)
    if bad.any():
        raise DataError(f'{path} has index {int(order[bad][0])} out of range 0..{num_videos - 1}'
                        ' (the number of videos in the feature files); regenerate the order files')
    values, counts = np.unique(order, return_counts=True)
    if (counts > 1).any():
        raise DataError(f'{path} lists row {int(values[counts > 1][0])} more than once; '
                        'each video belongs to a split once')
    return order.astype(np.int64)


def check_disjoint(orders):
    names = list(orders)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(orders[a], orders[b])
            if len(shared):
                raise DataError(f'{L.ORDER_FILES[a]} and {L.ORDER_FILES[b]} share {len(shared)} '
                                f'rows (e.g. {int(shared[0])}); the splits must be disjoint')


# ----------------------------------------------------------------------------- loading

def read_features(ds, rows, out, desc, progress, skip):
    """Copy ds[rows] (rows sorted, unique) into `out` chunk by chunk, converted to out's dtype.

    HDF5 converts to float32 as it reads, so only one chunk of the file's own dtype is ever
    in memory. Non-finite values stop the load with the file and row (and `skip`, how to
    leave that video out).
    """
    bar = tqdm(total=len(rows), desc=desc, unit='video', disable=not progress, leave=False)
    try:
        for start in range(0, len(rows), CHUNK_VIDEOS):
            chunk = rows[start:start + CHUNK_VIDEOS]
            lo, hi = int(chunk[0]), int(chunk[-1]) + 1
            sel = np.s_[lo:hi] if hi - lo == len(chunk) else np.s_[chunk.tolist()]
            try:
                block = torch.from_numpy(ds.astype(np.float32)[sel])
            except H5_ERRORS as e:
                raise DataError(f'{ds.file.filename}: could not read rows {lo}..{hi - 1} '
                                f'(truncated or corrupt file? {e}); re-download or regenerate it'
                                ) from None
            finite = torch.isfinite(block).flatten(1).all(1)
            if not finite.all():
                row = int(chunk[int((~finite).nonzero()[0])])
                raise DataError(f'{ds.file.filename} has NaN or Inf values in video {row}; '
                                f"re-extract that video's features or {skip}")
            stored = block.to(out.dtype)
            finite = torch.isfinite(stored).flatten(1).all(1)
            if not finite.all():   # float64 beyond float32, or float32 beyond float16
                row = int(chunk[int((~finite).nonzero()[0])])
                raise DataError(f'{ds.file.filename} has values too large for {out.dtype} in '
                                f'video {row} (float16 holds up to 65504); use --feature_dtype '
                                'float32, or rescale the features')
            out[start:start + len(chunk)] = stored.to(out.device)
            bar.update(len(chunk))
    finally:
        bar.close()


def load_ave(root, splits=('train', 'val', 'test'), setting='supervised', background=True,
             device='cpu', feature_dtype=torch.float32, progress=True):
    """Validate the data folder `root` and load `splits` onto `device`.

    setting 'weak' also reads mil_labels.h5 for 'train' and, with `background`, appends the
    background videos (*_noisy.h5) to it. Raises DataError (one line) on any problem.
    """
    root = Path(root)
    if not root.is_dir():
        what = 'is a file, not a folder' if root.exists() else 'does not exist'
        raise DataError(f'data folder {root.resolve()} {what}; pass --data_root DIR '
                        f'with the AVE files (features come from {L.FEATURE_SOURCES})')
    weak = setting == 'weak'
    wanted = {'audio': (L.AUDIO_FILES, FEATURES), 'visual': (L.VISUAL_FILE, FEATURES),
              'labels': (L.LABELS_FILE, LABELS),
              **{f'order_{s}': (L.ORDER_FILES[s], LABELS) for s in splits}}
    if weak and 'train' in splits:   # video labels are for training only
        wanted['mil'] = (L.MIL_LABELS_FILE, LABELS)
    if weak and background and 'train' in splits:
        wanted.update(noisy_audio=(L.NOISY_AUDIO_FILE, BACKGROUND),
                      noisy_visual=(L.NOISY_VISUAL_FILE, BACKGROUND),
                      noisy_labels=(L.NOISY_LABELS_FILE, BACKGROUND))
    paths = find_files(root, wanted)
    orders = {s: paths.pop(f'order_{s}') for s in splits}
    with contextlib.ExitStack() as opened:   # closes the files opened so far on any error
        files = {k: opened.enter_context(open_h5(p)) for k, p in paths.items()}
        return _load(files, orders, device, feature_dtype, progress)


def check_features(audio, visual):
    """Check a pair of feature datasets (shapes of the AVE layout, float dtypes); returns
    {file name: number of videos} of both, for check_same_count."""
    T = L.NUM_SEGMENTS
    counts = {audio.file.filename: check_shape(audio, (T, L.AUDIO_DIM), 'audio'),
              visual.file.filename: check_shape(visual, (T, *L.VISUAL_SHAPE), 'visual')}
    check_float(audio)
    check_float(visual)
    return counts


def empty_features(n, feature_dtype, device):
    """(n, T, A) audio and (n, T, H, W, V) visual tensors to read features into."""
    T = L.NUM_SEGMENTS
    return (torch.empty((n, T, L.AUDIO_DIM), dtype=feature_dtype, device=device),
            torch.empty((n, T, *L.VISUAL_SHAPE), dtype=feature_dtype, device=device))


def read_pair(audio, visual, rows, audio_out, visual_out, progress, skip):
    """read_features of the same `rows` of an audio and a visual dataset."""
    for ds, out in ((audio, audio_out), (visual, visual_out)):
        read_features(ds, rows, out, f'loading {Path(ds.file.filename).name}', progress, skip)


def _load(files, order_paths, device, feature_dtype, progress):
    ds = {k: read_key(f, L.FEATURE_KEY) for k, f in files.items()}
    T, C = L.NUM_SEGMENTS, L.NUM_CLASSES
    counts = {**check_features(ds['audio'], ds['visual']),
              ds['labels'].file.filename: check_shape(ds['labels'], (T, C + 1), 'segment labels')}
    if 'mil' in ds:
        counts[ds['mil'].file.filename] = check_shape(ds['mil'], (C + 1,), 'video labels')
    check_same_count(counts)
    num_videos = ds['audio'].shape[0]

    orders = {s: read_order(p, num_videos) for s, p in order_paths.items()}
    check_disjoint(orders)
    rows = np.unique(np.concatenate(list(orders.values())))       # sorted file rows to load
    labels = read_all(ds['labels'])[rows]                         # (R, T, C + 1)
    check_one_hot(labels, ds['labels'].file.filename, rows)
    video_label = np.zeros((len(rows), 0), np.float32)
    if 'mil' in ds:
        video_label = read_all(ds['mil'])[rows]                     # (R, C + 1)
        check_one_hot(video_label, ds['mil'].file.filename, rows)
        video_label = video_label.astype(np.float32)

    with_background = 'noisy_audio' in ds
    n_bg = 0
    if with_background:
        check_same_count({
            **check_features(ds['noisy_audio'], ds['noisy_visual']),
            ds['noisy_labels'].file.filename: check_shape(ds['noisy_labels'], (C + 1,),
                                                          'video labels')})
        n_bg = ds['noisy_audio'].shape[0]
        bg_label = read_all(ds['noisy_labels'])
        check_one_hot(bg_label, ds['noisy_labels'].file.filename)
        if (bg_label.argmax(-1) != C).any():
            m = int(np.flatnonzero(bg_label.argmax(-1) != C)[0])
            raise DataError(f"{ds['noisy_labels'].file.filename} labels background video {m} as "
                            f'class {int(bg_label[m].argmax())}; every row of it must be '
                            f'background (column {C}), or pass --no_background')
        bg_label = bg_label.astype(np.float32)

    R = len(rows) + n_bg
    audio, visual = empty_features(R, feature_dtype, device)
    read_pair(ds['audio'], ds['visual'], rows, audio[:len(rows)], visual[:len(rows)], progress,
              'drop it from the order files')
    segment = labels.argmax(-1)                                   # (R, T)
    check_one_class(segment, C, rows, ds['labels'].file.filename)
    # The video's class is its event class; a video without event segments has none (-1).
    per_class = (segment[..., None] == np.arange(C)).sum(1)       # (R, C)
    video_class = np.where(per_class.max(1) > 0, per_class.argmax(1), -1)
    if with_background:
        read_pair(ds['noisy_audio'], ds['noisy_visual'], np.arange(n_bg), audio[len(rows):],
                  visual[len(rows):], progress,
                  'pass --no_background to train without the background videos')
        segment = np.concatenate([segment, np.full((n_bg, T), C)])
        video_class = np.concatenate([video_class, np.full(n_bg, -1)])
        video_label = np.concatenate([video_label, bg_label])

    as_tensor = lambda a, dtype: torch.as_tensor(a, dtype=dtype).to(device)
    position = {s: np.searchsorted(rows, o) for s, o in orders.items()}  # file row -> tensor row
    background_rows = as_tensor(np.arange(len(rows), R), torch.int64)
    split_rows = {s: as_tensor(p, torch.int64) for s, p in position.items()}
    if with_background:
        split_rows['train'] = torch.cat([split_rows['train'], background_rows])
    return AVEData(audio=audio, visual=visual,
                   segment=as_tensor(segment, torch.int64),
                   video_class=as_tensor(video_class, torch.int64),
                   video_label=as_tensor(video_label, torch.float32),
                   splits=split_rows,
                   source_rows=np.concatenate([rows, -1 - np.arange(n_bg)]),
                   num_classes=C, file_videos=num_videos,
                   background_rows=background_rows)


def load_videos(audio, visual, labels=None, device='cpu', feature_dtype=torch.float32,
                progress=True):
    """New videos: every row of an audio and a visual feature file in the AVE layout (and,
    optionally, their one-hot segment labels), checked like a data folder's files.

    Returns AVEData whose split 'videos' is every row in file order; without `labels` its
    segment is None. A NaN names the file and row (there are no order files to drop it from).
    """
    paths = {'audio': Path(audio), 'visual': Path(visual)}
    if labels is not None:
        paths['labels'] = Path(labels)
    with contextlib.ExitStack() as opened:
        ds = {k: read_key(opened.enter_context(open_h5(p)), L.FEATURE_KEY)
              for k, p in paths.items()}
        T, C = L.NUM_SEGMENTS, L.NUM_CLASSES
        counts = check_features(ds['audio'], ds['visual'])
        segment = None
        if labels is not None:
            counts[paths['labels']] = check_shape(ds['labels'], (T, C + 1), 'one-hot segment labels')
            one_hot = read_all(ds['labels'])
            check_one_hot(one_hot, paths['labels'])
            segment = torch.from_numpy(one_hot.argmax(-1)).long().to(device)   # (N, T)
        check_same_count(counts)
        N = ds['audio'].shape[0]
        rows = np.arange(N)
        audio_t, visual_t = empty_features(N, feature_dtype, device)
        read_pair(ds['audio'], ds['visual'], rows, audio_t, visual_t, progress,
                  'leave that video out of the file')
    return AVEData(audio=audio_t, visual=visual_t, segment=segment, video_class=None,
                   video_label=None, splits={'videos': torch.arange(N, device=device)},
                   source_rows=rows, num_classes=C, file_videos=N)
