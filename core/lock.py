"""One process per folder: an exclusive kernel lock (flock) on a file holding its PID.

The lock dies with its process, so a run killed with kill -9 leaves no stale lock behind.
"""
import fcntl
import os

from core.errors import UserError


def hold(path, busy):
    """Lock the file `path` (created if needed) for this process; returns the open file,
    whose closing releases the lock. Held by another process: a UserError, `busy` formatted
    with that process's `pid`."""
    f = open(path, 'a+')
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or '?'
        f.close()
        raise UserError(busy.format(pid=pid)) from None
    f.truncate(0)
    f.write(f'{os.getpid()}\n')
    f.flush()
    return f
