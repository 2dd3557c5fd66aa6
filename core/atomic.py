"""Atomic files: a file appears whole under its final name, or not at all.

The files a run or a tool writes whole (checkpoints, metrics, reports, configs,
predictions, HDF5 labels and features) go through `atomic_path`: each is written to a
hidden temporary name beside its destination, fsynced, renamed over the destination
(atomic within one file system) and the folder fsynced, so a crash at any moment leaves
the old file or the new one. What grows as a run goes (train.log, TensorBoard's events)
is appended to instead, and the copy of the code is copied file by file.
"""
import contextlib
import errno
import json
import os
import shutil
import uuid
from pathlib import Path

from core.errors import UserError

TEMP_SUFFIX = '.tmp'   # temporary files are '.<name>.<random>.tmp'; a killed process leaves one


def temp_files(folder, name_glob='*'):
    """The temporary files a killed write of a file matching `name_glob` left in `folder`."""
    return Path(folder).glob(f'.{name_glob}.*{TEMP_SUFFIX}')


@contextlib.contextmanager
def atomic_path(path, size=None):
    """Yield a temporary path beside `path` to write; on success it replaces `path` durably.

    The temporary file is created by the caller with the usual umask-derived permissions.
    If the block fails, it is deleted and `path` is untouched. An OSError (a full disk, a
    vanished or read-only folder) becomes a one-line UserError naming `path`; for a full
    disk, with the space free there and the `size` (bytes) the file needs, where known.
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}')
    try:
        try:
            yield tmp
            fsync(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync(path.parent)   # make the rename itself durable
    except OSError as e:
        raise write_error(path, e, size) from None


def write_error(path, e, size=None):
    """The one-line UserError for OSError `e` (a full disk, a vanished or read-only folder)
    met while writing `path`: for a full disk, with the space free there and the `size`
    (bytes) the file needs, where known."""
    path = Path(path)
    # The OS's words for the errno: HDF5's own message spans lines and names buffers.
    reason = os.strerror(e.errno) if e.errno else ' '.join(str(e).split())[:160]
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        needed = f', {size / 2**20:.1f} MiB needed' if size is not None else ''
        reason += f': {free / 2**20:.1f} MiB free on the disk of {path.parent}{needed}'
    return UserError(f'could not write {path} ({reason}); the previous {path.name}, '
                     'if any, is intact; free disk space or choose another folder')


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Write the bytes `data` to `path` atomically (see atomic_path)."""
    with atomic_path(path, len(data)) as tmp, open(tmp, 'xb') as f:
        f.write(data)


def write_text(path, text):
    atomic_write(path, text.encode())


def write_json(path, value):
    """`value` as strict JSON (no NaN or Infinity, which JSON does not have), atomically."""
    write_text(path, json.dumps(value, indent=1, allow_nan=False))
