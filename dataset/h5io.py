"""HDF5 in and out: atomic writers, and readers whose every failure is one DataError.

Each writer fills a temporary file through core.atomic, so an interrupted run never leaves
a truncated `labels.h5` that a later run would read as valid. The readers name the file
(and the rows) of any problem: damaged, locked by another process, a missing key, NaN.
"""
import contextlib

import h5py
import numpy as np

from core.atomic import atomic_path
from core.errors import UserError


def write_h5(path, key, array):
    """Write `array` as dataset `key` of a new HDF5 file at `path`, atomically.

    The dataset keeps the array's shape and dtype; an existing file at `path` is replaced.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, 'x') as f:
        f.create_dataset(key, data=np.asarray(array))


def write_h5_chunked(path, key, shape, dtype, blocks, attrs=None):
    """Write dataset `key` of `shape`/`dtype` from an iterable of row blocks, atomically;
    `attrs` (name -> value), if given, become the dataset's attributes.

    `blocks` yields arrays whose first axes concatenate to `shape[0]` rows and whose other
    axes equal `shape[1:]`; each block is cast to `dtype` as it is written, so only one
    block is in memory at a time. Raises `ValueError` (and leaves `path` untouched) if the
    blocks do not fill the dataset exactly.
    """
    shape = tuple(shape)
    with atomic_path(path) as tmp, h5py.File(tmp, 'x') as f:
        dset = f.create_dataset(key, shape=shape, dtype=dtype)
        dset.attrs.update(attrs or {})
        row = 0
        for block in blocks:
            if block.shape[1:] != shape[1:] or row + len(block) > shape[0]:
                raise ValueError(f'{path}: block of shape {block.shape} does not fit rows '
                                 f'{row}.. of a dataset of shape {shape}')
            dset[row:row + len(block)] = block.astype(dtype, copy=False)
            row += len(block)
        if row != shape[0]:
            raise ValueError(f'{path}: blocks gave {row} rows, expected {shape[0]}')


# ----------------------------------------------------------------------------- reading
# Everything that reads the HDF5 files of a data folder goes through these helpers, so that
# a damaged, missing or busy file is always one DataError naming it.

class DataError(UserError):
    """A data folder (or feature file) that cannot be used as it is."""


# What h5py raises on a damaged file, depending on which of its structures is hit.
H5_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError)


@contextlib.contextmanager
def reading(path):
    """Turn h5py's errors inside the block into a DataError naming the damaged file."""
    try:
        yield
    except H5_ERRORS as e:
        reason = str(e).strip("'").splitlines()[0][:160] if str(e) else type(e).__name__
        if getattr(e, 'errno', None) == 13 or 'errno = 13' in str(e):
            raise DataError(f'{path} cannot be read (permission denied); give your user read '
                            'access to it') from None
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


def read_rows(ds, rows):
    """ds[rows] as float32 numpy, for sorted unique file `rows`: one read per run of
    consecutive rows, converted by HDF5 as it reads (so a float64 file never needs a float64
    copy in memory)."""
    out = np.empty((len(rows), *ds.shape[1:]), np.float32)
    runs = np.split(np.asarray(rows), np.flatnonzero(np.diff(rows) != 1) + 1)
    at = 0
    for run in runs:
        lo, hi = int(run[0]), int(run[-1]) + 1
        try:
            ds.read_direct(out, np.s_[lo:hi], np.s_[at:at + len(run)])
        except H5_ERRORS as e:
            raise DataError(f'{ds.file.filename}: could not read rows {lo}..{hi - 1} (truncated '
                            f'or corrupt file? {e}); re-download or regenerate it') from None
        at += len(run)
    return out
