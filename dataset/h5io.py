"""Atomic HDF5 writers: a file either appears complete under its final name or not at all.

Each writer fills a temporary file through core.atomic, so an interrupted run never leaves
a truncated `labels.h5` that a later run would read as valid.
"""

import h5py
import numpy as np

from core.atomic import atomic_path


def write_h5(path, key, array):
    """Write `array` as dataset `key` of a new HDF5 file at `path`, atomically.

    The dataset keeps the array's shape and dtype; an existing file at `path` is replaced.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, 'x') as f:
        f.create_dataset(key, data=np.asarray(array))


def write_h5_chunked(path, key, shape, dtype, blocks):
    """Write dataset `key` of `shape`/`dtype` from an iterable of row blocks, atomically.

    `blocks` yields arrays whose first axes concatenate to `shape[0]` rows and whose other
    axes equal `shape[1:]`; each block is cast to `dtype` as it is written, so only one
    block is in memory at a time. Raises `ValueError` (and leaves `path` untouched) if the
    blocks do not fill the dataset exactly.
    """
    shape = tuple(shape)
    with atomic_path(path) as tmp, h5py.File(tmp, 'x') as f:
        dset = f.create_dataset(key, shape=shape, dtype=dtype)
        row = 0
        for block in blocks:
            if block.shape[1:] != shape[1:] or row + len(block) > shape[0]:
                raise ValueError(f'{path}: block of shape {block.shape} does not fit rows '
                                 f'{row}.. of a dataset of shape {shape}')
            dset[row:row + len(block)] = block.astype(dtype, copy=False)
            row += len(block)
        if row != shape[0]:
            raise ValueError(f'{path}: blocks gave {row} rows, expected {shape[0]}')
