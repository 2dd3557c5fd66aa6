"""An AVE data folder -> validated float32 (or float16) tensors on the training device.

`load_ave` checks every file it needs before reading any features, then reads only the
rows of the requested splits, converting them in chunks, so a float64 file is never held
in memory whole. Batches are taken by indexing the resident tensors (`AVEData.batch`).
"""
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from dataset import layout as L
from utils.errors import UserError

CHUNK_VIDEOS = 64   # videos converted per read: 64 x 2 MB of float64 visual features


class DataError(UserError):
    """A data folder that cannot be used as it is."""


@dataclass
class AVEData:
    """Features and labels of the loaded videos, all on one device.

    Row r of every tensor is one video; `splits[name]` holds the rows of a split in the
    order of its order file (for the weakly-supervised 'train' split: the training videos,
    then the background videos).
    """
    audio: torch.Tensor          # (R, T, 128)
    visual: torch.Tensor         # (R, T, 7, 7, 512)
    segment: torch.Tensor        # (R, T) int64 class per segment, 28 = background
    video_class: torch.Tensor    # (R,) int64 event class of the video, -1 if it has none
    video_label: torch.Tensor    # (R, 29) float32 video label (mil_labels.h5), or (R, 0)
    splits: dict                 # name -> (N,) int64 rows
    source_rows: np.ndarray      # (R,) row in the data folder's arrays; -1-m for background m
    background_rows: torch.Tensor = field(default=None)  # rows of background videos

    def batch(self, rows):
        """Inputs and targets of `rows` ((B,) int64 on the data's device), features as float32."""
        audio = self.audio[rows].float()                          # (B, T, 128)
        visual = self.visual[rows].float()                        # (B, T, 7, 7, 512)
        targets = {'segment': self.segment[rows], 'video_class': self.video_class[rows],
                   'video_label': self.video_label[rows]}
        return audio, visual, targets

    def num_videos(self, split):
        return len(self.splits[split])


# ----------------------------------------------------------------------------- checks

def _fix_hint():
    return f'features come from {L.FEATURE_SOURCES}'


def find_file(root, names):
    """The first of `names` present in folder `root`, else a DataError naming the folder."""
    names = (names,) if isinstance(names, str) else names
    for name in names:
        if (root / name).is_file():
            return root / name
    wanted = ' or '.join(names)
    raise DataError(f'{wanted} not found in data folder {root.resolve()}; {_fix_hint()}')


# What h5py raises on a damaged file, depending on which of its structures is hit.
H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)


@contextlib.contextmanager
def reading(path):
    """Turn h5py's errors inside the block into a DataError naming the damaged file."""
    try:
        yield
    except H5_ERRORS as e:
        reason = str(e).strip("'").splitlines()[0][:160] if str(e) else type(e).__name__
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


def check_one_hot(labels, path):
    """labels (..., 29): exactly one 1 and otherwise 0 along the last axis."""
    binary = (labels == 0) | (labels == 1)
    sums = labels.sum(-1)
    bad = ~(binary.all(-1) & (sums == 1))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f'{path} is not one-hot at index {where} (values sum to '
                        f'{float(sums[where]):g}); each row needs exactly one 1 among 29 columns')


def read_order(root, split, num_videos):
    path = find_file(root, L.ORDER_FILES[split])
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

def read_features(ds, rows, out, desc, progress, skip='drop it from the order files'):
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
            out[start:start + len(chunk)] = block.to(out.device, out.dtype)
            bar.update(len(chunk))
    finally:
        bar.close()


def load_ave(root, splits=('train', 'val', 'test'), setting='supervised', background=True,
             device='cpu', feature_dtype=torch.float32, progress=True):
    """Validate the data folder `root` and load `splits` onto `device`.

    setting 'weak' also reads mil_labels.h5 and, with `background`, appends the background
    videos (*_noisy.h5) to the 'train' split. Raises DataError (one line) on any problem.
    """
    root = Path(root)
    if not root.is_dir():
        what = 'is a file, not a folder' if root.exists() else 'does not exist'
        raise DataError(f'data folder {root.resolve()} {what}; pass --data_root DIR '
                        f'with the AVE files ({_fix_hint()})')
    weak = setting == 'weak'
    paths = {'audio': find_file(root, L.AUDIO_FILES), 'visual': find_file(root, L.VISUAL_FILE),
             'labels': find_file(root, L.LABELS_FILE)}
    if weak:
        paths['mil'] = find_file(root, L.MIL_LABELS_FILE)
    if weak and background and 'train' in splits:
        for name, fname in (('noisy_audio', L.NOISY_AUDIO_FILE),
                            ('noisy_visual', L.NOISY_VISUAL_FILE),
                            ('noisy_labels', L.NOISY_LABELS_FILE)):
            try:
                paths[name] = find_file(root, fname)
            except DataError as e:
                raise DataError(f'{e}; or pass --no_background to train without the '
                                'background videos') from None
    with contextlib.ExitStack() as opened:   # closes the files opened so far on any error
        files = {k: opened.enter_context(open_h5(p)) for k, p in paths.items()}
        return _load(files, root, splits, weak, device, feature_dtype, progress)


def _load(files, root, splits, weak, device, feature_dtype, progress):
    ds = {k: read_key(f, L.FEATURE_KEY) for k, f in files.items()}
    T = L.NUM_SEGMENTS
    counts = {ds['audio'].file.filename: check_shape(ds['audio'], (T, L.AUDIO_DIM), 'audio'),
              ds['visual'].file.filename: check_shape(ds['visual'], (T, *L.VISUAL_SHAPE), 'visual'),
              ds['labels'].file.filename: check_shape(ds['labels'], (T, L.NUM_CLASSES + 1),
                                                      'segment labels')}
    if weak:
        counts[ds['mil'].file.filename] = check_shape(ds['mil'], (L.NUM_CLASSES + 1,), 'video labels')
    check_same_count(counts)
    check_float(ds['audio'])
    check_float(ds['visual'])
    num_videos = ds['audio'].shape[0]

    orders = {s: read_order(root, s, num_videos) for s in splits}
    check_disjoint(orders)
    rows = np.unique(np.concatenate(list(orders.values())))       # sorted file rows to load
    labels = read_all(ds['labels'])[rows]                         # (R, T, 29)
    check_one_hot(labels, ds['labels'].file.filename)
    video_label = np.zeros((len(rows), 0), np.float32)
    if weak:
        video_label = read_all(ds['mil'])[rows].astype(np.float32)  # (R, 29)
        check_one_hot(video_label, ds['mil'].file.filename)

    with_background = 'noisy_audio' in ds
    n_bg = 0
    if with_background:
        n_bg = check_shape(ds['noisy_audio'], (T, L.AUDIO_DIM), 'audio')
        check_same_count({
            ds['noisy_audio'].file.filename: n_bg,
            ds['noisy_visual'].file.filename: check_shape(ds['noisy_visual'], (T, *L.VISUAL_SHAPE),
                                                          'visual'),
            ds['noisy_labels'].file.filename: check_shape(ds['noisy_labels'], (L.NUM_CLASSES + 1,),
                                                          'video labels')})
        check_float(ds['noisy_audio'])
        check_float(ds['noisy_visual'])
        bg_label = read_all(ds['noisy_labels']).astype(np.float32)
        check_one_hot(bg_label, ds['noisy_labels'].file.filename)

    R = len(rows) + n_bg
    audio = torch.empty((R, T, L.AUDIO_DIM), dtype=feature_dtype, device=device)
    visual = torch.empty((R, T, *L.VISUAL_SHAPE), dtype=feature_dtype, device=device)
    for key, out in (('audio', audio), ('visual', visual)):
        read_features(ds[key], rows, out[:len(rows)], f'loading {Path(ds[key].file.filename).name}',
                      progress)
    segment = labels.argmax(-1)                                   # (R, T)
    # The video's class is its event class; a video without event segments has none (-1).
    per_class = (segment[..., None] == np.arange(L.NUM_CLASSES)).sum(1)  # (R, 28)
    video_class = np.where(per_class.max(1) > 0, per_class.argmax(1), -1)
    if with_background:
        all_rows = np.arange(n_bg)
        skip = 'pass --no_background to train without the background videos'
        read_features(ds['noisy_audio'], all_rows, audio[len(rows):], 'loading background audio',
                      progress, skip)
        read_features(ds['noisy_visual'], all_rows, visual[len(rows):],
                      'loading background visual', progress, skip)
        segment = np.concatenate([segment, np.full((n_bg, T), L.BACKGROUND)])
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
                   background_rows=background_rows)
