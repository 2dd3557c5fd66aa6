"""Training on several processes (engine/distributed.py, tools/torchrun.py): the same numbers
as one process, and every way such a run can stop (a bad input, Ctrl-C, a killed rank, a
killed launcher, a rank that sees its peer gone) is one line and a meaningful status.

Every kill happens at an event of the run (tests/die_at.py: rank 0 stops right after writing
an epoch's last.pth.tar and says 'held'), never after a guessed time."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import REPO, TINY_FLAGS
from main import main
from tools.benchmark_data import process_tree
from engine.checkpoint import LAST, load_checkpoint

# Every dropout off: one process and two must then compute the same numbers.
NO_DROPOUT = [f for k in ('encoder', 'visual', 'mfb', 'dima', 'fusion')
              for f in (f'--{k}_dropout', '0')]
QUIET = ['--no_progress', '--num_threads', '1']


def env(**extra):
    return dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', **extra)


def flags(data, run, *extra):
    return [str(f) for f in ['--data_root', data, '--snapshot_pref', run, '--n_epoch', 4,
                             '--batch_size', 4, *TINY_FLAGS, *QUIET, *extra]]


def launch(nproc, event, n, argv):
    """tools/torchrun.py running tests/die_at.py on `nproc` processes; its own session, as a
    terminal's foreground job (Ctrl-C reaches every process of it). Its stderr goes to a
    file: a pipe nobody reads while the test waits on stdout could fill and hang the run."""
    err = tempfile.TemporaryFile('w+')
    proc = subprocess.Popen([sys.executable, str(REPO / 'tools' / 'torchrun.py'), str(nproc),
                             str(REPO / 'tests' / 'die_at.py'), 'supervised', event, str(n),
                             *argv], stdout=subprocess.PIPE, stderr=err, text=True,
                            cwd=REPO, env=env(), start_new_session=True)
    proc.err_file = err
    return proc


def stderr_of(proc):
    proc.err_file.seek(0)
    return proc.err_file.read()


def wait_for_held(proc):
    """The lines rank 0 printed up to 'held' (it then waits to be killed)."""
    printed = []
    for line in proc.stdout:
        printed.append(line)
        if line == 'held\n':
            return printed
    proc.wait(timeout=120)
    raise AssertionError(f'the run ended before it held:\n{"".join(printed)}{stderr_of(proc)}')


def environment(pid):
    try:
        return dict(e.split('=', 1) for e in Path(f'/proc/{pid}/environ').read_text(
            errors='replace').split('\0') if '=' in e)
    except OSError:
        return {}


def ranks(proc):
    """{rank: pid} of the launcher's training processes."""
    found = {}
    for pid in process_tree(proc.pid)[1:]:
        if 'RANK' in environment(pid):
            found[int(environment(pid)['RANK'])] = pid
    return found


def ended(pid):
    """Whether process `pid` has ended (gone, or a zombie nobody has reaped yet)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


def wait_until_ended(pids, limit=120):
    """Wait for processes that are not our children (a killed launcher's ranks) to end."""
    deadline = time.monotonic() + limit
    while not all(map(ended, pids)):
        assert time.monotonic() < deadline, f'processes {pids} still run after {limit} s'
        time.sleep(0.05)


def finish(proc):
    """(exit status, stdout lines, stderr lines) of a launcher that was stopped."""
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out.splitlines(), stderr_of(proc).splitlines()


# ----------------------------------------------------------------------------- the numbers

def test_two_processes_match_one_and_resume_on_one_after_kill_9(micro_ave, tmp_path):
    """Two processes (torchrun, gloo) give the loss curve of one process with the same global
    batch; killed with SIGKILL (the launcher and both ranks) after epoch 2, the run resumes
    on one process. The global batch 11 of 12 training videos leaves a last batch of one
    video: one rank's part of it is empty."""
    two = tmp_path / 'two'
    argv = flags(micro_ave, two, '--batch_size', 11, '--eval_batch_size', 1, *NO_DROPOUT)
    proc = launch(2, f'hold:{LAST}', 2, argv)
    printed = wait_for_held(proc)
    launcher_folder = environment(ranks(proc)[0])['DMIN_LAUNCHER']   # killed, it cannot
    for pid in process_tree(proc.pid):
        os.kill(pid, signal.SIGKILL)
    status, _, _ = finish(proc)
    shutil.rmtree(launcher_folder, ignore_errors=True)
    assert status == -signal.SIGKILL
    assert any('on 2 processes (global batch 11)' in line for line in printed)
    assert sum(line.startswith('epoch   1 |') for line in printed) == 1   # rank 0 alone logs
    state = load_checkpoint(two / LAST)
    assert state['epoch'] == 2 and len(state['rng']['ranks']) == 2
    by_two = state['history']

    # Epochs 1-2 of the two processes, then the rest on one, against one process throughout.
    resumed = main('supervised', ['--resume', str(two / LAST), *argv])['history']
    one = main('supervised', [*argv, '--snapshot_pref', str(tmp_path / 'one')])['history']
    assert len(by_two) == 2 and resumed[:2] == by_two and len(resumed) == 4
    for a, b in zip(one, resumed, strict=True):
        for key, value in a['train'].items():
            assert b['train'][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        assert (a['val_accuracy'], a['test_accuracy']) == (b['val_accuracy'], b['test_accuracy'])


# ----------------------------------------------------------------------------- how it stops

@pytest.mark.parametrize('script', ['supv_train.sh', 'weak_train.sh'])
def test_nproc_must_be_a_number(script):
    proc = subprocess.run(['bash', str(REPO / script)], capture_output=True, text=True,
                          env=env(NPROC='two'))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'error: NPROC=two is invalid: give the number of processes, e.g. NPROC=2')


def test_an_input_error_on_two_processes_is_one_line_and_its_status(tmp_path):
    """Both ranks meet it; the line is printed once, without torchrun's traceback."""
    proc = subprocess.run(['bash', str(REPO / 'supv_train.sh'), *flags(tmp_path / 'nowhere',
                                                                       tmp_path / 'run')],
                          capture_output=True, text=True, env=env(NPROC='2'), cwd=REPO)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: data folder {tmp_path / 'nowhere'} does not exist")


def test_a_killed_rank_is_one_line_naming_it_and_how_to_go_on(micro_ave, tmp_path):
    run = tmp_path / 'run'
    proc = launch(2, f'hold:{LAST}', 2, flags(micro_ave, run))
    wait_for_held(proc)
    pids = ranks(proc)
    os.kill(pids[1], signal.SIGKILL)
    status, _, err = finish(proc)
    assert status == 128 + signal.SIGKILL
    assert err == [f'error: the process of rank 1 (PID {pids[1]}) was killed by signal 9 '
                   '(SIGKILL); the other processes were stopped; the finished epochs are in '
                   f'{run / LAST}; continue with --resume {run / LAST}']
    assert load_checkpoint(run / LAST)['epoch'] == 2 and all(map(ended, pids.values()))


def test_ctrl_c_stops_every_process_with_one_line_and_status_130(micro_ave, tmp_path):
    run = tmp_path / 'run'
    proc = launch(2, f'hold:{LAST}', 2, flags(micro_ave, run))
    wait_for_held(proc)
    pids = ranks(proc)
    os.killpg(proc.pid, signal.SIGINT)          # what a terminal does on Ctrl-C
    status, _, err = finish(proc)
    assert status == 130
    assert err == [f'interrupted: the finished epochs are in {run / LAST}; continue with '
                   f'--resume {run / LAST}']
    assert all(map(ended, pids.values()))


def test_the_ranks_stop_when_the_launcher_is_killed(micro_ave, tmp_path):
    """kill -9 of the launcher (torchrun's agent): the kernel sends each rank a SIGINT, and
    they stop as on Ctrl-C instead of training on alone."""
    run = tmp_path / 'run'
    proc = launch(2, f'hold:{LAST}', 2, flags(micro_ave, run))
    wait_for_held(proc)
    pids = ranks(proc)
    launcher_folder = environment(pids[0])['DMIN_LAUNCHER']   # it cannot delete it now
    os.kill(proc.pid, signal.SIGKILL)
    wait_until_ended(pids.values())
    status, _, err = finish(proc)
    shutil.rmtree(launcher_folder, ignore_errors=True)
    assert status == -signal.SIGKILL
    assert err == [f'interrupted: the finished epochs are in {run / LAST}; continue with '
                   f'--resume {run / LAST}']


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_a_rank_that_sees_its_peer_gone_says_so_in_one_line(micro_ave, tmp_path):
    """Two ranks started by hand (as on two machines, without this repository's launcher):
    rank 1 dies as epoch 2 begins; rank 0, waiting for it in the gradient averaging, says so
    in one line instead of gloo's traceback, and exits with status 3."""
    run, port = tmp_path / 'run', str(free_port())
    procs = [subprocess.Popen(
        [sys.executable, str(REPO / 'tests' / 'die_at.py'), 'supervised', 'kill:1', '2',
         *flags(micro_ave, run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env=env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE='2', LOCAL_WORLD_SIZE='2',
                          MASTER_ADDR='127.0.0.1', MASTER_PORT=port)) for r in (0, 1)]
    (_, err0), _ = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [3, -signal.SIGKILL]
    [line] = err0.splitlines()
    assert line.startswith('error: another process of this run stopped (') and line.endswith(
        f'; the finished epochs are in {run / LAST}; continue with --resume {run / LAST}')
