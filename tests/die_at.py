"""Train like supv_main.py / weak_main.py, but die by SIGKILL at a chosen moment.

    python -m tests.die_at SETTING EVENT N [flags...]

EVENT is where the process kills itself, as a power cut or `kill -9` would:
    write:NAME  half-way through the N-th atomic write of a file whose name contains NAME
                (half of the bytes are in its temporary file, synced to disk)
    after:NAME  right after the N-th such write is complete
Used by tests/test_reliability.py.
"""
import os
import signal
import sys
from pathlib import Path

import core.atomic
import main as program
import utils.checkpoint
import utils.run_dir


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def nth(n):
    """A function that returns True on its n-th call."""
    calls = 0

    def hit():
        nonlocal calls
        calls += 1
        return calls == n
    return hit


def patch_writes(name, hit, half):
    """Make atomic_write (wherever it is called from) die on the write that `hit` picks."""
    real = core.atomic.atomic_write

    def atomic_write(path, data):
        if name not in Path(path).name or not hit():
            return real(path, data)
        if not half:
            real(path, data)
            die()
        with core.atomic.atomic_path(path) as tmp, open(tmp, 'xb') as f:
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()

    core.atomic.atomic_write = utils.checkpoint.atomic_write = atomic_write
    utils.run_dir.atomic_write = atomic_write


if __name__ == '__main__':
    setting, event, n, *flags = sys.argv[1:]
    hit = nth(int(n))
    kind, _, name = event.partition(':')
    if kind in ('write', 'after'):
        patch_writes(name, hit, half=kind == 'write')
    else:
        raise SystemExit(f'unknown event {event!r}')
    program.main(setting, flags, prog=f'die_at {setting}')
