"""An AVE-layout data folder -> validated labels, and features in memory or streamed.

`load_ave` checks every file it needs before reading any features. The data describe
themselves (their layout.DataSpec): classes, segments per video and feature shapes come from
the files' shapes, class names from classes.txt. Features of the requested splits are then
read into tensors on the training device (chunk by chunk, so a float64 file is never held
whole) or, for data bigger than memory, streamed from the files batch by batch
(dataset/stream.py).
`load_videos` does the same for a pair of feature files of new videos (tools/predict.py).
"""
import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.errors import check_interrupt
from dataset import layout as L
from dataset.layout import DataSpec
from dataset.h5io import DataError, open_h5, read_all, read_key, read_rows
from dataset.stream import FeatureReader, stored, stream

CHUNK_VIDEOS = 64   # videos converted per read: 64 x 2 MB of float64 visual features


@dataclass
class AVEData:
    """Labels of the loaded videos, and their features in memory or streamed.

    Row r of every tensor is one video; `splits[name]` holds the rows of a split in the
    order of its order file (for the weakly-supervised 'train' split: the training videos,
    then the background videos; for `load_videos`: 'videos', every row in file order).
    Labels live on `device`; features too when in memory (`audio`, `visual`), else `reader`
    reads them from the files (`audio` and `visual` are then None). `spec` says what the
    files hold: classes (None for new videos without labels), segments, feature sizes.
    """
    audio: torch.Tensor          # (R, T, A): A = 128 in AVE; None when streamed
    visual: torch.Tensor         # (R, T, H, W, V): 7, 7, 512 in AVE; None when streamed
    segment: torch.Tensor        # (R, T) int64 class per segment, C = background; None if unknown
    video_class: torch.Tensor    # (R,) int64 event class of the video, -1 if it has none
    video_label: torch.Tensor    # (R, C + 1) float32 video label (mil_labels.h5), or (R, 0)
    splits: dict                 # name -> (N,) int64 rows
    source_rows: np.ndarray      # (R,) row in the data files; -1-m for background video m
    file_videos: int             # videos in the data files (loaded or not)
    spec: DataSpec               # classes, segments per video, feature sizes
    feature_bytes: int = 0       # the features of the R rows, in their storage dtype
    memory_reason: str = None    # why the features are in memory or streamed (auto's choice)
    device: torch.device = torch.device('cpu')
    background_rows: torch.Tensor = field(default=None)  # rows of background videos
    reader: FeatureReader = None  # streamed features; None when in memory
    workers: int = 0             # streaming: DataLoader worker processes
    prefetch: int = 2            # streaming: batches each worker reads ahead
    worker_init: object = None   # streaming: called with its index in each worker first

    def inputs(self, rows):
        """Model inputs of in-memory `rows` ((B,) int64 on the data's device), as float32."""
        return self.audio[rows].float(), self.visual[rows].float()  # (B, T, A), (B, T, H, W, V)

    def batches(self, batches):
        """Yield (rows, audio, visual) for each of `batches` ((B,) int64 row tensors), the
        features float32 on the data's device: indexed in memory, or read from the files
        ahead of time by worker processes."""
        if self.reader is not None:
            yield from stream(self.reader, batches, self.device, self.workers, self.prefetch,
                              self.worker_init)
            return
        for rows in batches:
            yield (rows, *self.inputs(rows))

    def targets(self, rows):
        """Training targets of `rows`: segment classes, video class and video label."""
        return {'segment': self.segment[rows], 'video_class': self.video_class[rows],
                'video_label': self.video_label[rows]}

    def num_videos(self, split):
        return len(self.splits[split])

    @property
    def in_memory(self):
        return self.reader is None


def feature_bytes(rows, spec, dtype):
    """Bytes of the features of `rows` videos of DataSpec `spec`, stored as `dtype`."""
    per_segment = spec.audio_dim + int(np.prod(spec.visual_shape))
    return int(rows * spec.num_segments * per_segment * torch.finfo(dtype).bits // 8)


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


def check_shape(ds, tail, what):
    """Require ds.shape == (N, *tail); return N."""
    if ds.ndim != len(tail) + 1 or tuple(ds.shape[1:]) != tuple(tail):
        want = ', '.join(['N'] + [str(t) for t in tail])
        raise DataError(f'{ds.file.filename} has shape {ds.shape}, expected ({want}) {what}; '
                        'use the file of the AVE release (README, "Data") or regenerate it')
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


def check_disjoint(orders, files=L.ORDER_FILES):
    names = list(orders)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = np.intersect1d(orders[a], orders[b])
            if len(shared):
                raise DataError(f'{files[a]} and {files[b]} share {len(shared)} '
                                f'rows (e.g. {int(shared[0])}); the splits must be disjoint')


def label_sizes(ds, what):
    """(T, C) of one-hot segment labels (N, T, C + 1): T segments, C classes + background."""
    if ds.ndim != 3 or ds.shape[2] < 2:
        raise DataError(f'{ds.file.filename} has shape {ds.shape}, expected (N, T, C + 1) {what}'
                        ': T segments per video, C event classes and a last background column '
                        '(AVE: 10, 29); regenerate it with python -m dataset.labels')
    return ds.shape[1], ds.shape[2] - 1


def feature_spec(audio, visual):
    """The DataSpec (classes unknown) of a pair of feature datasets, which must be (N, T, A)
    audio and (N, T, H, W, V) visual floats with the same T."""
    for ds, dims, what in ((audio, 3, '(N, T, A) audio features: A = 128 for VGGish'),
                           (visual, 5, '(N, T, H, W, V) visual maps: 7, 7, 512 for VGG-19 pool5')):
        if ds.ndim != dims or 0 in ds.shape[1:]:
            raise DataError(f'{ds.file.filename} has shape {ds.shape}, expected {what}, T '
                            'segments per video; use the file of the AVE release (README, '
                            '"Data") or regenerate it')
        check_float(ds)
    if audio.shape[1] != visual.shape[1]:
        raise DataError(f'{audio.file.filename} has {audio.shape[1]} segments per video but '
                        f'{visual.file.filename} has {visual.shape[1]}; the two must come from '
                        'the same extraction')
    return DataSpec(None, audio.shape[1], audio.shape[2], tuple(visual.shape[2:]))


# The sizes each kind of feature file holds.
FILE_SIZES = {'audio': ('num_segments', 'audio_dim'), 'visual': ('num_segments', 'visual_shape')}


def check_matches(path, kind, spec, expected):
    """The sizes of file `path` (`kind` 'audio' or 'visual', `spec` as feature_spec gives
    them) must agree with `expected` ({key: (value, the file it comes from)}); a DataError
    names the first that differs."""
    for key in FILE_SIZES[kind]:
        if key in expected and getattr(spec, key) != expected[key][0]:
            want, source = expected[key]
            raise DataError(f'{path} has {DataSpec.WORDS[key]} {getattr(spec, key)}, but '
                            f'{source} has {want}; all files of a data folder must come from '
                            'the same extraction and label set')


def check_features(audio, visual, expected):
    """feature_spec of a pair of datasets, checked against `expected` ({key: (value, source
    file)}: the labels' segment count, or the event videos' sizes for the background
    videos); returns (spec, {file name: number of videos}) for check_same_count."""
    spec = feature_spec(audio, visual)
    for ds, kind in ((audio, 'audio'), (visual, 'visual')):
        check_matches(ds.file.filename, kind, spec, expected)
    return spec, {audio.file.filename: audio.shape[0], visual.file.filename: visual.shape[0]}


def read_class_names(root, num_classes):
    """The C class names of data folder `root`: its classes.txt (one per line, in label-column
    order) or, without one, layout.default_class_names."""
    path = Path(root) / L.CLASSES_FILE
    if not path.exists():
        return L.default_class_names(num_classes)
    try:
        names = [line.strip() for line in path.read_text(encoding='utf-8').splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f'cannot read {path} ({getattr(e, "strerror", None) or e}); it must be a '
                        'UTF-8 text file with one class name per line') from None
    while names and not names[-1]:
        names.pop()
    if len(names) != num_classes:
        raise DataError(f'{path} names {len(names)} classes, but the label files have '
                        f'{num_classes} event classes (their width minus the background column); '
                        'give one name per line, in label-column order, without background')
    if '' in names or len(set(names)) != len(names):
        what = 'an empty line' if '' in names else 'a name twice'
        raise DataError(f'{path} has {what}; give each of the {num_classes} classes one '
                        'distinct name per line')
    return tuple(names)


# ----------------------------------------------------------------------------- loading

def read_features(ds, rows, out, desc, progress, skip):
    """Copy ds[rows] (rows sorted, unique) into `out` chunk by chunk, converted to out's dtype.

    HDF5 converts to float32 as it reads, so only one chunk of the file's own dtype is ever
    in memory. Non-finite values stop the load with the file and row (and `skip`, how to
    leave that video out).
    """
    with tqdm(total=len(rows), desc=desc, unit='video', disable=not progress, leave=False) as bar:
        for start in range(0, len(rows), CHUNK_VIDEOS):
            check_interrupt()
            chunk = rows[start:start + CHUNK_VIDEOS]
            block = stored(read_rows(ds, chunk), out.dtype, ds.file.filename, chunk, skip)
            out[start:start + len(chunk)] = block.to(out.device)
            bar.update(len(chunk))


def empty_features(n, spec, feature_dtype, device):
    """(n, T, A) audio and (n, T, H, W, V) visual tensors to read features into."""
    T = spec.num_segments
    return (torch.empty((n, T, spec.audio_dim), dtype=feature_dtype, device=device),
            torch.empty((n, T, *spec.visual_shape), dtype=feature_dtype, device=device))


def read_pair(audio, visual, rows, audio_out, visual_out, progress, skip):
    """read_features of the same file `rows` of an audio and a visual dataset."""
    for ds, out in ((audio, audio_out), (visual, visual_out)):
        read_features(ds, rows, out, f'loading {Path(ds.file.filename).name}', progress, skip)


def choose_memory(in_memory, needed, budget):
    """(whether to load features of `needed` bytes into memory, why): `in_memory` True or
    'true', False or 'false', or 'auto': when they take at most half of `budget` (the free
    memory; None: unknown, load them)."""
    if in_memory != 'auto':
        return in_memory in (True, 'true'), f"asked for: {str(in_memory).lower()}"
    if budget is None:
        return True, 'auto: free memory unknown'
    return needed <= budget / 2, f'auto: {budget / 2 ** 30:.1f} GiB free'



def load_ave(root, splits=('train', 'val', 'test'), setting='supervised', background=True,
             device='cpu', feature_dtype=torch.float32, progress=True, in_memory=True,
             memory_budget=None, workers=0, prefetch=2):
    """Validate the data folder `root` and load `splits` onto `device`.

    setting 'weak' also reads mil_labels.h5 for 'train' and, with `background`, appends the
    background videos (*_noisy.h5) to it. Features are read into memory with `in_memory`
    True ('true'), streamed from the files (by `workers` DataLoader processes, `prefetch`
    batches ahead) with False ('false'), and with 'auto' streamed when they would take more
    than half of `memory_budget` bytes. Raises DataError (one line) on any problem.
    """
    root = Path(root)
    try:
        readable = os.access(root, os.R_OK | os.X_OK)
        if not root.is_dir():
            what = 'is a file, not a folder' if root.exists() else 'does not exist'
            raise DataError(f'data folder {root.resolve()} {what}; pass --data_root DIR '
                            f'with the AVE files (features come from {L.FEATURE_SOURCES})')
        if not readable:
            raise PermissionError(13, 'Permission denied', str(root))
        return _load_folder(root, splits, setting, background, device, feature_dtype,
                            progress, in_memory, memory_budget, workers, prefetch)
    except PermissionError as e:
        raise DataError(f'data folder {root}: permission denied on {e.filename or root}; give '
                        'your user read access to the folder and its files (chmod u+rx on the '
                        'folder), or pass another --data_root') from None


def _load_folder(root, splits, setting, background, device, feature_dtype, progress,
                 in_memory, memory_budget, workers, prefetch):
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
        data = _load(root, files, orders, device, feature_dtype, progress, in_memory,
                     memory_budget)
    data.workers, data.prefetch = workers, prefetch
    return data


def _load(root, files, order_paths, device, feature_dtype, progress, in_memory, memory_budget):
    ds = {k: read_key(f, L.FEATURE_KEY) for k, f in files.items()}
    labels_path = ds['labels'].file.filename
    T, C = label_sizes(ds['labels'], 'one-hot segment labels')
    sizes, counts = check_features(ds['audio'], ds['visual'], {'num_segments': (T, labels_path)})
    spec = DataSpec(C, T, sizes.audio_dim, sizes.visual_shape, read_class_names(root, C))
    counts[labels_path] = ds['labels'].shape[0]
    if 'mil' in ds:
        counts[ds['mil'].file.filename] = check_shape(ds['mil'], (C + 1,), 'video labels')
    check_same_count(counts)
    num_videos = ds['audio'].shape[0]

    orders = {s: read_order(p, num_videos) for s, p in order_paths.items()}
    check_disjoint(orders)
    rows = np.unique(np.concatenate(list(orders.values())))       # sorted file rows to load
    labels = read_all(ds['labels'])[rows]                         # (R, T, C + 1)
    check_one_hot(labels, labels_path, rows)
    video_label = np.zeros((len(rows), 0), np.float32)
    if 'mil' in ds:
        video_label = read_all(ds['mil'])[rows]                     # (R, C + 1)
        check_one_hot(video_label, ds['mil'].file.filename, rows)
        video_label = video_label.astype(np.float32)

    with_background = 'noisy_audio' in ds
    n_bg = 0
    if with_background:
        audio_path, visual_path = ds['audio'].file.filename, ds['visual'].file.filename
        _, bg_counts = check_features(ds['noisy_audio'], ds['noisy_visual'], {
            'num_segments': (spec.num_segments, audio_path),
            'audio_dim': (spec.audio_dim, audio_path),
            'visual_shape': (spec.visual_shape, visual_path)})
        noisy_labels_path = ds['noisy_labels'].file.filename
        bg_counts[noisy_labels_path] = check_shape(ds['noisy_labels'], (C + 1,), 'video labels')
        check_same_count(bg_counts)
        n_bg = ds['noisy_audio'].shape[0]
        bg_label = read_all(ds['noisy_labels'])
        check_one_hot(bg_label, noisy_labels_path)
        if (bg_label.argmax(-1) != C).any():
            m = int(np.flatnonzero(bg_label.argmax(-1) != C)[0])
            raise DataError(f'{noisy_labels_path} labels background video {m} as class '
                            f'{int(bg_label[m].argmax())}; every row of it must be background '
                            f'(column {C}), or pass --no_background')
        bg_label = bg_label.astype(np.float32)

    segment = labels.argmax(-1)                                   # (R, T)
    check_one_class(segment, C, rows, labels_path)
    # The video's class is its event class; a video without event segments has none (-1).
    per_class = (segment[..., None] == np.arange(C)).sum(1)       # (R, C)
    video_class = np.where(per_class.max(1) > 0, per_class.argmax(1), -1)
    R, n = len(rows) + n_bg, len(rows)
    audio = visual = reader = None
    needed = feature_bytes(R, spec, feature_dtype)
    memory, reason = choose_memory(in_memory, needed, memory_budget)
    if memory:
        audio, visual = empty_features(R, spec, feature_dtype, device)
        read_pair(ds['audio'], ds['visual'], rows, audio[:n], visual[:n], progress,
                  'drop it from the order files')
        if with_background:
            read_pair(ds['noisy_audio'], ds['noisy_visual'], np.arange(n_bg), audio[n:],
                      visual[n:], progress,
                      'pass --no_background to train without the background videos')
    else:
        reader = FeatureReader({k: d.file.filename for k, d in ds.items()
                                if k in ('audio', 'visual', 'noisy_audio', 'noisy_visual')},
                               np.concatenate([rows, -1 - np.arange(n_bg)]), feature_dtype)
    if with_background:
        segment = np.concatenate([segment, np.full((n_bg, T), C)])
        video_class = np.concatenate([video_class, np.full(n_bg, -1)])
        video_label = np.concatenate([video_label, bg_label])

    as_tensor = lambda a, dtype: torch.as_tensor(a, dtype=dtype).to(device)
    position = {s: np.searchsorted(rows, o) for s, o in orders.items()}  # file row -> tensor row
    background_rows = as_tensor(np.arange(n, R), torch.int64)
    split_rows = {s: as_tensor(p, torch.int64) for s, p in position.items()}
    if with_background:
        split_rows['train'] = torch.cat([split_rows['train'], background_rows])
    return AVEData(audio=audio, visual=visual,
                   segment=as_tensor(segment, torch.int64),
                   video_class=as_tensor(video_class, torch.int64),
                   video_label=as_tensor(video_label, torch.float32),
                   splits=split_rows,
                   source_rows=np.concatenate([rows, -1 - np.arange(n_bg)]),
                   file_videos=num_videos, spec=spec, feature_bytes=needed,
                   memory_reason=reason,
                   device=torch.device(device), background_rows=background_rows,
                   reader=reader)


def load_videos(audio, visual, labels=None, device='cpu', feature_dtype=torch.float32,
                progress=True):
    """New videos: every row of an audio and a visual feature file in the AVE layout (and,
    optionally, their one-hot segment labels), checked like a data folder's files.

    Returns AVEData whose split 'videos' is every row in file order; without `labels` its
    segment is None, and so are its spec's classes (the checkpoint knows them).
    A NaN names the file and row (there are no order files to drop it from).
    """
    paths = {'audio': Path(audio), 'visual': Path(visual)}
    if labels is not None:
        paths['labels'] = Path(labels)
    with contextlib.ExitStack() as opened:
        ds = {k: read_key(opened.enter_context(open_h5(p)), L.FEATURE_KEY)
              for k, p in paths.items()}
        spec, counts = check_features(ds['audio'], ds['visual'], {})
        segment = None
        if labels is not None:
            T, C = label_sizes(ds['labels'], 'one-hot segment labels')
            if T != spec.num_segments:
                raise DataError(f"{paths['labels']} has {T} segments per video, but "
                                f"{paths['audio']} has {spec.num_segments}; the labels must "
                                'describe the same videos')
            spec = dataclasses.replace(spec, num_classes=C)
            counts[paths['labels']] = ds['labels'].shape[0]
            one_hot = read_all(ds['labels'])
            check_one_hot(one_hot, paths['labels'])
            segment = torch.from_numpy(one_hot.argmax(-1)).long().to(device)   # (N, T)
        check_same_count(counts)
        N = ds['audio'].shape[0]
        rows = np.arange(N)
        audio_t, visual_t = empty_features(N, spec, feature_dtype, device)
        read_pair(ds['audio'], ds['visual'], rows, audio_t, visual_t, progress,
                  'leave that video out of the file')
    return AVEData(audio=audio_t, visual=visual_t, segment=segment, video_class=None,
                   video_label=None, splits={'videos': torch.arange(N, device=device)},
                   source_rows=rows, file_videos=N, spec=spec,
                   feature_bytes=feature_bytes(N, spec, feature_dtype), device=torch.device(device))
