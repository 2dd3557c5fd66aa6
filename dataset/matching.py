"""The data of cross-modality localization (AVE's third task, docs/cml.md): per-segment audio
and pooled visual features, which segments are the event (labels_closs.h5), and the match
splits (*_order_match.h5), which are not the localization splits.

A video's event is one run of consecutive segments; its start and length are what the task
localizes.
"""
import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.errors import check_interrupt
from dataset import layout as L
from dataset.ave import (CHUNK_VIDEOS, FEATURES, LABELS, check_disjoint, check_float,
                         check_same_count, find_files, read_features, read_order)
from dataset.h5io import DataError, open_h5, read_all, read_key, read_rows
from dataset.layout import DataSpec
from dataset.stream import stored

SKIP = 'drop it from the match order files'


@dataclass
class MatchData:
    """Row r of every tensor is one video; `splits[name]` its rows in the order of the match
    order file, `file_rows[name]` the rows of the data files they are."""
    audio: torch.Tensor       # (R, T, A) float32
    visual: torch.Tensor      # (R, T, V) float32: the visual map averaged over its positions
    event: torch.Tensor       # (R, T) bool: the segment is in the video's event
    splits: dict              # name -> (N,) int64 rows
    file_rows: dict           # name -> (N,) numpy int64 rows of the data files
    source_rows: np.ndarray   # (R,) the row in the data files of each row
    spec: DataSpec            # no classes; visual_shape (1, 1, V)
    visual_source: str        # where the visual vectors come from (a file, or derived)

    def spans(self, split):
        """(start, length) (N,) int64 tensors of each video's event in `split`."""
        return event_spans(self.event[self.splits[split]])


def event_spans(event):
    """(start, length) of the one run of True in each row of (N, T) bool `event`; a row
    without one has length 0 (and start 0)."""
    length = event.sum(1)
    start = torch.where(length > 0, event.float().argmax(1), torch.zeros_like(length))
    return start, length


def check_contiguous(event, path, rows):
    """Every video's event segments must be one run: the task localizes a window."""
    runs = (np.diff(event.astype(np.int8), axis=1) == 1).sum(1) + event[:, 0]
    bad = np.flatnonzero(runs > 1)
    if len(bad):
        raise DataError(f'{path} gives video row {int(rows[bad[0]])} an event in {int(runs[bad[0]])} '
                        'separate parts; a cross-modality query is one run of segments (rebuild '
                        'the file with python -m dataset.labels)')


def read_pooled(ds, rows, out, progress):
    """The (N, T, H, W, V) maps of `rows`, averaged over the H x W positions, into `out`
    (N, T, V), one chunk at a time."""
    name = Path(ds.file.filename).name
    with tqdm(total=len(rows), desc=f'pooling {name}', unit='video', disable=not progress,
              leave=False) as bar:
        for at in range(0, len(rows), CHUNK_VIDEOS):
            check_interrupt()
            chunk = rows[at:at + CHUNK_VIDEOS]
            block = stored(read_rows(ds, chunk), torch.float32, ds.file.filename, chunk, SKIP)
            out[at:at + len(chunk)] = block.mean((2, 3))
            bar.update(len(chunk))


def load_match(root, splits=('train', 'val', 'test'), device='cpu', progress=True):
    """Validate data folder `root` for cross-modality localization and load `splits`.

    Reads the audio features, visual_feature_vec.h5 ((N, T, V) vectors) or, without it, the
    maps of visual_feature.h5 averaged over their positions, labels_closs.h5 and the match
    order files. Raises DataError (one line) on any problem."""
    root = Path(root)
    if not root.is_dir():
        what = 'is a file, not a folder' if root.exists() else 'does not exist'
        raise DataError(f'data folder {root.resolve()} {what}; pass --data_root DIR with the '
                        f'AVE files (features come from {L.FEATURE_SOURCES})')
    source = ('visual_vec', L.VISUAL_VEC_FILE) if (root / L.VISUAL_VEC_FILE).is_file() else (
        'visual', L.VISUAL_FILE)
    wanted = {'audio': (L.AUDIO_FILES, FEATURES),
              source[0]: ((L.VISUAL_VEC_FILE, L.VISUAL_FILE), FEATURES),
              'closs': (L.CLOSS_FILE, LABELS),
              **{f'order_{s}': (L.MATCH_ORDER_FILES[s], MATCH_ORDERS) for s in splits}}
    paths = find_files(root, wanted)
    orders = {s: paths.pop(f'order_{s}') for s in splits}
    with contextlib.ExitStack() as opened:
        ds = {k: read_key(opened.enter_context(open_h5(p)), L.FEATURE_KEY) for k, p in paths.items()}
        return _load(ds, orders, device, progress, source)


MATCH_ORDERS = ('the match order files come with the AVE release (its data/ folder: '
                'train_order_match.h5, val_order_match.h5, test_order_match.h5), or from '
                '`python -m dataset.synthetic`')


def _load(ds, order_paths, device, progress, source):
    audio, visual, closs = ds['audio'], ds[source[0]], ds['closs']
    pooled = source[0] == 'visual'
    if audio.ndim != 3 or 0 in audio.shape[1:]:
        raise DataError(f'{audio.file.filename} has shape {audio.shape}, expected (N, T, A) '
                        'audio features (A = 128 for VGGish)')
    want = 5 if pooled else 3
    if visual.ndim != want or 0 in visual.shape[1:]:
        raise DataError(f'{visual.file.filename} has shape {visual.shape}, expected '
                        + ('(N, T, H, W, V) visual maps' if pooled else '(N, T, V) visual vectors '
                           '(the maps averaged over their positions)'))
    for d in (audio, visual):
        check_float(d)
    T = audio.shape[1]
    if visual.shape[1] != T or closs.ndim != 2 or closs.shape[1] != T:
        raise DataError(f'{audio.file.filename}, {visual.file.filename} and '
                        f'{closs.file.filename} must have the same segments per video (audio: '
                        f'{T}; {closs.file.filename} has shape {closs.shape}, expected (N, {T}))')
    check_same_count({d.file.filename: d.shape[0] for d in (audio, visual, closs)})
    orders = {s: read_order(p, audio.shape[0]) for s, p in order_paths.items()}
    check_disjoint(orders, L.MATCH_ORDER_FILES)
    rows = np.unique(np.concatenate(list(orders.values())))
    event = read_all(closs)[rows]
    if not np.isin(event, (0, 1)).all():
        raise DataError(f'{closs.file.filename} holds values other than 0 and 1; it marks each '
                        'segment of the event with 1 (rebuild it with python -m dataset.labels)')
    event = event.astype(bool)
    check_contiguous(event, closs.file.filename, rows)
    V = visual.shape[-1]
    audio_t = torch.empty((len(rows), T, audio.shape[2]))
    visual_t = torch.empty((len(rows), T, V))
    read_features(audio, rows, audio_t, f'loading {Path(audio.file.filename).name}', progress,
                  SKIP)
    if pooled:
        read_pooled(visual, rows, visual_t, progress)
        where = (f'{Path(visual.file.filename).name} averaged over its {visual.shape[2]} x '
                 f'{visual.shape[3]} positions (no {L.VISUAL_VEC_FILE})')
    else:
        read_features(visual, rows, visual_t, f'loading {Path(visual.file.filename).name}',
                      progress, SKIP)
        where = Path(visual.file.filename).name
    position = {s: torch.as_tensor(np.searchsorted(rows, o)).to(device) for s, o in orders.items()}
    return MatchData(audio=audio_t.to(device), visual=visual_t.to(device),
                     event=torch.as_tensor(event).to(device), splits=position, file_rows=orders,
                     source_rows=rows,
                     spec=DataSpec(None, T, audio.shape[2], (1, 1, V)), visual_source=where)
