"""Train like supv_main.py / weak_main.py, but die by SIGKILL, or wait to be killed, at a
chosen moment.

    python -m tests.die_at SETTING EVENT N [flags...]     (or as a script: tests/die_at.py)

SETTING is supervised or weak, or compare: then tools/compare.py runs with the flags.

EVENT is where the process kills itself, as a power cut or `kill -9` would:
    write:NAME  half-way through the N-th atomic write of a file whose name contains NAME
                (half of the bytes are in its temporary file, synced to disk)
    after:NAME  right after the N-th such write is complete
    kill:R      rank R of a torchrun launch, as epoch N begins
or where it stops to be killed from outside:
    hold:NAME   right after the N-th such write, print 'held' and wait for a signal
Used by tests/test_reliability.py, tests/test_distributed.py and tests/test_compare.py.
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run as a script, too
import core.atomic  # noqa: E402
import main as program  # noqa: E402
import engine.checkpoint  # noqa: E402
import engine.run_dir  # noqa: E402


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


def hold():
    print('held', flush=True)
    while True:
        signal.pause()


def patch_writes(name, hit, half, then=die):
    """Make atomic_write (wherever it is called from) die on the write that `hit` picks
    (half-way through it or, with `then`, after it)."""
    real = core.atomic.atomic_write

    def atomic_write(path, data):
        if name not in Path(path).name or not hit():
            return real(path, data)
        if not half:
            real(path, data)
            then()
        with core.atomic.atomic_path(path) as tmp, open(tmp, 'xb') as f:
            f.write(data[:len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()

    core.atomic.atomic_write = engine.checkpoint.atomic_write = atomic_write
    engine.run_dir.atomic_write = atomic_write


if __name__ == '__main__':
    setting, event, n, *flags = sys.argv[1:]
    hit = nth(int(n))
    kind, _, name = event.partition(':')
    if kind in ('write', 'after', 'hold'):
        patch_writes(name, hit, half=kind == 'write', then=hold if kind == 'hold' else die)
    elif kind == 'kill':
        real = program.train_one_epoch

        def train_one_epoch(model, criterion, data, optimizer, epoch, *args):
            if os.environ.get('RANK') == name and epoch == int(n):
                die()
            return real(model, criterion, data, optimizer, epoch, *args)
        program.train_one_epoch = train_one_epoch
    else:
        raise SystemExit(f'unknown event {event!r}')
    if setting == 'compare':
        from tools.compare import main as compare
        compare(flags)
    else:
        program.main(setting, flags, prog=f'die_at {setting}')
