"""Nothing is lost: exact resume, crash safety under SIGKILL, determinism, non-finite losses.

The runs use a 24-video synthetic set and the tiny model: what is tested is the bookkeeping
of the training loop, which does not depend on the model's size.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import main as program
import engine.loop
from core.errors import UserError
from dataset.synthetic import generate
from main import main
from tests.helpers import REPO, TINY_FLAGS, user_error
from engine.checkpoint import BEST_GLOB, LAST, load_checkpoint

N_EPOCH = 6
# Milestones inside the run, so that a resumed run must continue the learning-rate schedule.
# One thread: the tiny model gains little from more.
FLAGS = ['--batch_size', '4', '--lr_milestones', '1', '3', '--num_threads', '1', '--no_progress',
         *TINY_FLAGS]


def argv(data, folder, n_epoch=N_EPOCH, *extra):
    return ['--data_root', str(data), '--snapshot_pref', str(folder), '--n_epoch', str(n_epoch),
            *FLAGS, *extra]


def same(a, b, where='state'):
    """Assert that two nested checkpoint values are identical, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


def untimed(value):
    """metrics.json or a history without its wall-clock fields, which differ between runs."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if 'seconds' not in k}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def assert_same_run(a, b):
    """Run folders a and b end in the same state: weights, optimizer, schedule, RNG, metrics."""
    last_a, last_b = load_checkpoint(a / LAST), load_checkpoint(b / LAST)
    for key in ('epoch', 'model', 'optimizer', 'scheduler', 'rng', 'best'):
        same(last_a[key], last_b[key], key)
    same(untimed(last_a['history']), untimed(last_b['history']), 'history')
    metrics_a, metrics_b = (json.loads((f / 'metrics.json').read_text()) for f in (a, b))
    assert untimed(metrics_a) == untimed(metrics_b)
    best = last_a['best']['checkpoint']
    same(load_checkpoint(a / best)['model'], load_checkpoint(b / best)['model'], best)
    assert [p.name for p in b.glob(BEST_GLOB)] == [best]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A synthetic set of 24 videos (20/2/2, 2 background) on which the tiny model's best
    epoch moves within N_EPOCH epochs (1, 3, 4), so best checkpoints get replaced too."""
    out = tmp_path_factory.mktemp('ave24')
    generate(out, videos=24, background=2, seed=1, noise=0.5, progress=False)
    return out


@pytest.fixture(scope='module')
def straight(data, tmp_path_factory):
    """A supervised run of N_EPOCH epochs in this process, uninterrupted."""
    folder = tmp_path_factory.mktemp('straight') / 'run'
    main('supervised', argv(data, folder))
    return folder


# ----------------------------------------------------------------------------- exact resume

def test_supervised_resume_ends_bit_identical_to_a_straight_run(straight, data, tmp_path):
    folder = tmp_path / 'run'
    main('supervised', argv(data, folder, 2))
    resumed = main('supervised', ['--resume', str(folder / LAST), '--n_epoch', str(N_EPOCH),
                                  '--data_root', str(data), '--no_progress'])
    assert resumed['epochs_done'] == N_EPOCH
    assert [r['lr'] for r in resumed['history']] == [5e-4, 2.5e-4, 2.5e-4] + [1.25e-4] * 3
    assert_same_run(straight, folder)


def test_weak_resume_with_background_videos_ends_bit_identical(data, tmp_path):
    main('weak', argv(data, tmp_path / 'straight', 3, '--background'))
    main('weak', argv(data, tmp_path / 'resumed', 1, '--background'))
    resumed = main('weak', ['--resume', str(tmp_path / 'resumed' / LAST), '--n_epoch', '3',
                            '--data_root', str(data), '--no_progress'])
    assert resumed['epochs_done'] == 3 and resumed['setting'] == 'weak'
    assert_same_run(tmp_path / 'straight', tmp_path / 'resumed')


def test_resume_into_another_folder_spares_its_run_and_brings_the_best_checkpoint(
        straight, data, tmp_path, capsys):
    other = tmp_path / 'other'
    main('supervised', argv(data, other, 1))
    resume = ['--resume', straight / LAST, '--data_root', data, '--no_progress', '--n_epoch',
              N_EPOCH + 1]
    line = user_error(capsys, 'supervised', resume + ['--snapshot_pref', other])
    assert 'already holds another run' in line and '--overwrite' in line
    assert load_checkpoint(other / LAST)['epoch'] == 1
    moved = tmp_path / 'moved'
    result = main('supervised', [str(a) for a in resume] + ['--snapshot_pref', str(moved)])
    assert result['epochs_done'] == N_EPOCH + 1
    assert load_checkpoint(moved / result['best_checkpoint'])['epoch'] == result['best_epoch']


# ----------------------------------------------------------------------------- SIGKILL

def start(*args):
    """Start a training process whose log lines can be read as they come."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))


def wait_for_self_kill(proc):
    output, _ = proc.communicate()
    assert proc.returncode == -9, output


def intact(run):
    """The checkpoints a killed run leaves all load; returns the epoch of last.pth.tar (0: none)."""
    for best in run.glob(BEST_GLOB):
        load_checkpoint(best)
    if not (run / LAST).exists():
        return 0
    last = load_checkpoint(run / LAST)
    best = load_checkpoint(run / last['best']['checkpoint'])
    assert best['epoch'] == last['best']['epoch']
    if (run / 'metrics.json').exists():   # written just after last.pth.tar: never ahead of it
        assert json.loads((run / 'metrics.json').read_text())['epochs_done'] <= last['epoch']
    return last['epoch']


def partial_temp_file(run, name):
    """The one temporary file of `name` that a write killed half-way left; it does not load."""
    [temp] = run.glob(f'.{name}.*.tmp')
    with pytest.raises(UserError, match='corrupt'):
        load_checkpoint(temp)
    return temp


def test_killed_at_every_kind_of_moment_resumes_bit_identical(straight, data, tmp_path):
    """Four kills by SIGKILL, each at an event of the run (never after a guessed time): half-way
    through writing a best checkpoint, last.pth.tar or metrics.json, and right after
    last.pth.tar. The run, made of 4 killed processes and a last run in this process, ends
    bit-identical to the straight run made in this process: the same seed gives the same
    run in another process, too. (tests/test_scale.py kills a torchrun run from outside in
    the middle of an epoch.)"""
    run = tmp_path / 'run'
    fresh = [*argv(data, run), '--overwrite']
    resume = ['--resume', run / LAST, '--data_root', data, '--no_progress']
    die_at = ['-m', 'tests.die_at', 'supervised']

    # Half-way through writing epoch 1's best checkpoint: nothing to resume yet.
    wait_for_self_kill(start(*die_at, 'write:best_model', 1, *fresh))
    partial_temp_file(run, 'model_epoch_1_*')
    assert intact(run) == 0 and not list(run.glob(BEST_GLOB))

    # Half-way through writing epoch 2's last.pth.tar: epoch 1's is intact.
    wait_for_self_kill(start(*die_at, f'write:{LAST}', 2, *fresh))
    partial_temp_file(run, LAST)
    assert intact(run) == 1

    # Right after epoch 2's last.pth.tar, before its metrics.json.
    wait_for_self_kill(start(*die_at, f'after:{LAST}', 1, *resume))
    assert intact(run) == 2
    assert json.loads((run / 'metrics.json').read_text())['epochs_done'] == 1
    # Half-way through epoch 3's metrics.json.
    wait_for_self_kill(start(*die_at, 'write:metrics.json', 1, *resume))
    assert intact(run) == 3

    main('supervised', [str(a) for a in resume])
    assert_same_run(straight, run)
    assert not list(run.glob('.*.tmp')), 'the partial files of killed writes are cleaned up'


# ----------------------------------------------------------------------------- faults

@pytest.mark.parametrize('value, epoch, step', [(float('nan'), 2, 2), (float('inf'), 1, 3)])
def test_non_finite_loss_stops_with_epoch_and_step_keeping_the_last_good_checkpoint(
        value, epoch, step, data, tmp_path, monkeypatch, capsys):
    steps_per_epoch = 5   # 20 training videos, batch size 4
    calls = []
    real_total_loss = engine.loop.total_loss

    def total_loss(terms, weight_dict):
        calls.append(1)
        loss = real_total_loss(terms, weight_dict)
        return loss * value if len(calls) == (epoch - 1) * steps_per_epoch + step else loss

    monkeypatch.setattr(engine.loop, 'total_loss', total_loss)
    run = tmp_path / 'run'
    line = user_error(capsys, 'supervised', argv(data, run, 3))
    assert f'at epoch {epoch}, step {step}' in line and '--lr' in line
    assert not list(run.glob(f'model_epoch_{epoch}_*'))
    if epoch == 1:
        assert 'no checkpoint' in line and not (run / LAST).exists()
    else:
        assert f'epoch {epoch - 1}' in line and load_checkpoint(run / LAST)['epoch'] == epoch - 1
        assert json.loads((run / 'metrics.json').read_text())['epochs_done'] == epoch - 1
    # The run's log ends with the line the user saw.
    assert (run / 'train.log').read_text().splitlines()[-1].endswith(line)


def test_ctrl_c_before_training_leaves_no_run_folder(data, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(program, 'load_ave', interrupted)
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'notes.txt').write_text('kept')
    for folder in (tmp_path / 'new' / 'run', tmp_path / 'mine'):
        with pytest.raises(SystemExit) as e:
            main('supervised', argv(data, folder, 3))
        assert e.value.code == 130
    assert not (tmp_path / 'new' / 'run').exists()
    assert [p.name for p in (tmp_path / 'mine').iterdir()] == ['notes.txt']


def test_ctrl_c_exits_with_one_line_and_keeps_the_finished_epochs(
        data, tmp_path, monkeypatch, capsys):
    real_train = program.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        if args[4] == 2:   # the epoch
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(program, 'train_one_epoch', train_one_epoch)
    with pytest.raises(SystemExit) as e:
        main('supervised', argv(data, tmp_path / 'run', 3))
    assert e.value.code == 130
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith('interrupted:') and '--resume' in line
    assert load_checkpoint(tmp_path / 'run' / LAST)['epoch'] == 1
