"""Train like supv_main.py / weak_main.py, but die by SIGKILL in the middle of a file write.

    python -m tests.die_while_writing SETTING NAME N [flags...]

The N-th atomic write of a file whose name contains NAME puts half of the file's bytes into
its temporary file, syncs them to disk and then kills the process with SIGKILL, as a power
cut or `kill -9` would at that moment. Used by tests/test_reliability.py.
"""
import io
import os
import signal
import sys
from pathlib import Path

import utils.checkpoint as checkpoint
from utils.run import main


def die_on_write(name, n):
    """Patch utils.checkpoint.atomic_write to die half-way through the n-th write of `name`."""
    real = checkpoint.atomic_write
    seen = 0

    def atomic_write(path, write):
        nonlocal seen
        if name not in Path(path).name:
            return real(path, write)
        seen += 1
        if seen < n:
            return real(path, write)
        whole = io.BytesIO()
        write(whole)
        data = whole.getvalue()

        def half_then_die(f):
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        return real(path, half_then_die)

    checkpoint.atomic_write = atomic_write


if __name__ == '__main__':
    setting, name, n, *flags = sys.argv[1:]
    die_on_write(name, int(n))
    main(setting, flags, prog=f'die_while_writing {setting}')
