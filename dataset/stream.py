"""Features streamed from the HDF5 files, for data sets bigger than memory.

`FeatureReader` is a torch Dataset whose item is a whole batch: given the data rows of a
batch, it returns their audio and visual features, read from the files as runs of
consecutive rows (one HDF5 read per run) and converted to the storage dtype. `stream`
wraps it in a DataLoader whose worker processes read the next batches while the model
trains on the current one (prefetch), into pinned memory when the device is a GPU. The
batches and their order are the caller's, so streaming trains on exactly the batches the
in-memory path would.

A run reads the files for hours: before every read, the reader checks that each file is
still the one the run started with (same device, inode, size and modification time), so
a file replaced or rewritten mid-run stops the run instead of training it on other data.
A worker process that dies (the OOM killer, kill -9) stops it with one line too.
"""
import os
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.errors import Resumable
from dataset.h5io import DataError, open_h5, read_key, read_rows
from dataset import layout as L


class FileChanged(DataError, Resumable):
    """A feature file is no longer the one the run started with."""


class WorkerDied(DataError, Resumable):
    """A DataLoader worker process died."""


def identity(path):
    """What tells a file from its replacement: device, inode, size, modification time."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def stored(block, dtype, path, rows, skip):
    """Float32 numpy `block` (rows `rows` of file `path`) as a torch tensor of `dtype`; a
    DataError naming the first video with NaN/Inf values, or values `dtype` cannot hold
    (`skip` says how to leave that video out)."""
    block = torch.from_numpy(block)
    finite = torch.isfinite(block).flatten(1).all(1)
    if not finite.all():
        row = int(rows[int((~finite).nonzero()[0])])
        raise DataError(f"{path} has NaN or Inf values in video {row}; re-extract that video's "
                        f'features or {skip}')
    converted = block.to(dtype)
    finite = torch.isfinite(converted).flatten(1).all(1)
    if not finite.all():   # float64 beyond float32, or float32 beyond float16
        row = int(rows[int((~finite).nonzero()[0])])
        raise DataError(f'{path} has values too large for {dtype} in video {row} (float16 '
                        'holds up to 65504); use --feature_dtype float32, or rescale the features')
    return converted


class FeatureReader(Dataset):
    """reader[rows] -> {'audio': (B, T, A), 'visual': (B, T, H, W, V)} tensors of `dtype`.

    `paths`: {'audio', 'visual'} files of the event videos and, where background videos are
    used, {'noisy_audio', 'noisy_visual'}; `source_rows[r]` is data row r's row in those
    files (-1-m for background video m). Each process opens the files itself on first use,
    so a worker never shares an HDF5 handle with its parent. A bad value or a changed file
    is returned as {'error': DataError} (and raised by `stream` as one line), not as a
    worker's traceback.
    """

    def __init__(self, paths, source_rows, dtype):
        self.paths = dict(paths)
        self.source_rows = np.asarray(source_rows)
        self.dtype = dtype
        self.files, self.pid = None, None
        self.identities = {k: identity(p) for k, p in self.paths.items()}

    def check_files(self):
        for key, path in self.paths.items():
            try:
                same = identity(path) == self.identities[key]
            except OSError:
                same = False
            if not same:
                raise FileChanged(f'{path} was replaced, changed or removed while this run '
                                  'was reading it; the run stopped rather than train on other '
                                  'data (put the original file back to continue)')

    def datasets(self):
        self.check_files()
        if self.pid != os.getpid():
            self.files = {k: read_key(open_h5(p), L.FEATURE_KEY) for k, p in self.paths.items()}
            self.pid = os.getpid()
        return self.files

    def __getitem__(self, rows):
        try:
            return self.read(rows)
        except DataError as e:
            return {'error': e}

    def read(self, rows):
        source = self.source_rows[np.asarray(rows)]
        # The batch's event rows and background rows, each in file order (one read per run
        # of consecutive rows), with their positions in the batch; the same for both kinds.
        groups = []
        for prefix, picked, file_rows in (('', source >= 0, source),
                                          ('noisy_', source < 0, -1 - source)):
            if picked.any():
                where = np.flatnonzero(picked)
                order = np.argsort(file_rows[where], kind='stable')
                groups.append((prefix, torch.from_numpy(where[order]), file_rows[where][order]))
        files, out = self.datasets(), {}
        for kind in ('audio', 'visual'):
            batch = None
            for prefix, where, file_rows in groups:
                ds = files[prefix + kind]
                block = stored(read_rows(ds, file_rows), self.dtype, ds.file.filename,
                               file_rows, 'leave it out of the order files')
                if batch is None:
                    batch = torch.empty((len(source), *block.shape[1:]), dtype=self.dtype)
                batch[where] = block
            out[kind] = batch
        return out


def stream(reader, batches, device, workers, prefetch, worker_init=None):
    """Yield (rows, audio, visual) for each of `batches` (int64 row tensors), the features as
    float32 on `device`, read by `workers` processes (0: in this one), each `prefetch`
    batches ahead; each worker first calls `worker_init(worker_id)` when given."""
    loader = DataLoader(reader, batch_size=None, sampler=[b.cpu() for b in batches],
                        num_workers=workers, prefetch_factor=prefetch if workers else None,
                        pin_memory=device.type == 'cuda', worker_init_fn=worker_init,
                        # Its own generator: the workers' seeds must not draw from torch's
                        # global RNG, which the model's dropout uses.
                        generator=torch.Generator())
    items = iter(loader)
    try:
        for rows in batches:
            try:
                item = next(items)
            except RuntimeError as e:
                if 'DataLoader worker' not in str(e):
                    raise
                raise WorkerDied(f'a data worker process died ({worker_death(items)})') from None
            if 'error' in item:
                raise item['error']
            yield (rows, item['audio'].to(device, non_blocking=True).float(),
                   item['visual'].to(device, non_blocking=True).float())
    finally:
        # Stop the workers now: an error's traceback through this frame would keep them
        # until a garbage collection, when their queues may be gone (10 s of timeouts).
        del items


def worker_death(items):
    """How a worker of DataLoader iterator `items` died: the signal that killed it, or its
    exit status."""
    codes = [w.exitcode for w in getattr(items, '_workers', []) if w.exitcode]
    if not codes:
        return 'it exited unexpectedly'
    if codes[0] < 0:
        return f'signal {-codes[0]}, {signal.Signals(-codes[0]).name}'
    return f'exit status {codes[0]}'
