"""Start a training program on N processes of this machine through torchrun, and report
like the program does: one line, and the exit status of the process that failed.

    python tools/torchrun.py N PROGRAM [flags...]       (NPROC=N bash supv_train.sh ...)

torchrun itself reports a failed process as its agent's traceback. This launcher runs the
same agent (torch.distributed.run, --standalone) in this process. Rank 0's output stays
on the console; the other ranks, quiet but for errors, write theirs to a temporary folder.
When a process fails:
- rank 0 stopped with its own line (a bad input, Ctrl-C): that line is on the console;
  the launcher exits with its status (2, 130);
- another rank stopped with its own line: the launcher prints that line, and its status;
- a rank was killed (the OOM killer, kill -9): one line naming it, the signal and how the
  run goes on; status 128 + the signal. The other ranks, which see it gone (exit 3), say
  nothing more.
Ctrl-C reaches every process (the terminal sends it to all): each rank stops as one process
does, and rank 0's line says how to continue. If the launcher itself is killed with kill -9,
the ranks get a SIGINT from the kernel and stop the same way (engine/distributed.py).
"""
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.errors import EXIT_INTERRUPTED, EXIT_PEER_GONE, LAUNCHER_ENV  # noqa: E402
from engine import run_dir  # noqa: E402
from engine.distributed import RUN_FOLDER  # noqa: E402


def main(argv):
    nproc, program, *flags = argv
    nproc = int(nproc)
    folder = tempfile.mkdtemp(prefix='dmin_torchrun_')
    quiet = ','.join(f'{rank}:3' for rank in range(1, nproc))   # stdout and stderr to files
    args = ['--standalone', '--nproc_per_node', str(nproc), '--log-dir', folder,
            *(['--redirects', quiet] if quiet else []), program, *flags]
    os.environ[LAUNCHER_ENV] = folder
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import parse_args, run
        for name in logging.root.manager.loggerDict:   # the agent's own lines: ours instead
            if name.startswith('torch.distributed'):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            run(parse_args(args))
            return 0
        except ChildFailedError as e:
            return report(e.failures, Path(folder))
        except SignalException as e:    # Ctrl-C or kill: the agent stopped every rank
            if e.sigval != signal.SIGINT:
                print(f'error: the launcher got {e.sigval.name}; every process of the run was '
                      f'stopped; {resume_hint(Path(folder))}', file=sys.stderr)
            return 128 + int(e.sigval)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(failures, folder):
    """Print the one line that says why the run stopped, unless rank 0 printed it on the
    console; returns the exit status. `failures`: {rank: ProcessFailure} of torchrun."""
    said = {}   # {rank: (status, line)} of the ranks that stopped with their own line
    for path in folder.glob('stopped_*'):
        status, line = path.read_text().split('\n', 1)
        said[int(path.name.split('_')[1])] = int(status), line.strip()
    own = {r: s for r, s in said.items() if s[0] != EXIT_PEER_GONE}
    if own:
        rank = min(own)   # rank 0 first: its line is on the console already
        status, line = own[rank]
        if rank != 0:
            print(line, file=sys.stderr)
        return status
    # Killed by a signal; SIGTERM is the agent stopping the others, so it comes last.
    killed = sorted((failure.exitcode == -signal.SIGTERM, rank, failure)
                    for rank, failure in failures.items() if failure.exitcode < 0)
    if killed:
        _, rank, failure = killed[0]
        sig = signal.Signals(-failure.exitcode)
        print(f'error: the process of rank {rank} (PID {failure.pid}) was killed by signal '
              f'{int(sig)} ({sig.name}); the other processes were stopped; '
              f'{resume_hint(folder)}', file=sys.stderr)
        return 128 + int(sig)
    # An unexpected failure (a traceback): rank 0's is on the console; show another's.
    first = {r: f for r, f in failures.items() if f.exitcode != EXIT_PEER_GONE} or failures
    rank = min(first)
    if rank != 0:
        print('\n'.join(stderr_lines(folder, first[rank].local_rank)), file=sys.stderr)
    return first[rank].exitcode


def stderr_lines(folder, local_rank):
    """What a quiet rank wrote to stderr (torchrun's log folder layout:
    <folder>/<run id>/attempt_<n>/<local rank>/stderr.log)."""
    files = sorted(folder.glob(f'*/attempt_*/{local_rank}/stderr.log'))
    return files[-1].read_text(errors='replace').splitlines() if files else []


def resume_hint(folder):
    """How the run goes on, from the run folder rank 0 reported in `folder`."""
    try:
        return run_dir.resume_hint(Path((folder / RUN_FOLDER).read_text()))
    except OSError:
        return 'continue from the last.pth.tar of its run folder (--resume)'


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
