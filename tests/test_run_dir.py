"""engine/run_dir.py: what a run keeps in its folder: the code that ran, its best checkpoint
(also when only last.pth.tar was copied), one line when the disk is full."""
import errno
import json
import shutil
import subprocess

import pytest

from main import main
from tests.helpers import REPO, TINY_FLAGS, user_error
from engine.checkpoint import BEST_GLOB, LAST, load_checkpoint


def train_argv(data, run, *extra):
    return [str(a) for a in ['--data_root', data, '--snapshot_pref', run, '--batch_size', 4,
                             '--num_threads', 1, '--no_progress', *TINY_FLAGS, *extra]]


def test_the_run_folder_holds_all_the_code_of_the_program(micro_ave, tmp_path):
    main('supervised', train_argv(micro_ave, tmp_path / 'run', '--n_epoch', 1))
    copied = {str(p.relative_to(tmp_path / 'run' / 'code'))
              for p in (tmp_path / 'run' / 'code').rglob('*') if p.is_file()}
    tracked = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip('not a git checkout: the list of the code is unknown')
    code = {f for f in tracked.stdout.splitlines()
            if f.endswith(('.py', '.sh', '.yaml', '.md', '.txt'))
            and not f.startswith(('tests/', 'data/', 'docs/', '.'))}
    assert code <= copied, sorted(code - copied)


def test_a_full_disk_while_the_code_is_copied_is_one_line(micro_ave, tmp_path, monkeypatch,
                                                         capsys):
    def full(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device', str(dst))

    monkeypatch.setattr(shutil, 'copy2', full)
    line = user_error(capsys, 'supervised', train_argv(micro_ave, tmp_path / 'run',
                                                       '--n_epoch', 1))
    assert line.startswith(f"error: could not write {tmp_path / 'run' / 'code'}/")
    assert 'No space left on device:' in line and 'MiB free on the disk of' in line
    assert not (tmp_path / 'run').exists()    # a start that fails leaves nothing behind


@pytest.fixture(scope='module')
def runs(micro_ave, tmp_path_factory):
    """A 1-epoch and a 2-epoch run: in the first the best epoch is the last one."""
    root = tmp_path_factory.mktemp('best')
    for n in (1, 2):
        main('supervised', train_argv(micro_ave, root / f'run{n}', '--n_epoch', n,
                                      '--lr_milestones', 1, '--dima_dropout', 0))
    return root


def only_last(run, tmp_path):
    """A folder holding only `run`'s last.pth.tar, as a user who copied just that file has."""
    moved = tmp_path / 'copied'
    moved.mkdir()
    shutil.copy(run / LAST, moved / LAST)
    return moved


def test_a_missing_best_checkpoint_of_the_last_epoch_is_written_again(runs, micro_ave, tmp_path,
                                                                      capfd):
    copied = only_last(runs / 'run1', tmp_path)
    result = main('supervised', ['--resume', str(copied / LAST), '--n_epoch', '2',
                                 '--data_root', str(micro_ave), '--no_progress'])
    assert 'was missing; written again from last.pth.tar (epoch 1, the best epoch)' in \
        capfd.readouterr().out
    best = copied / result['best_checkpoint']
    assert best.is_file() and [p.name for p in copied.glob(BEST_GLOB)] == [best.name]
    assert load_checkpoint(best)['epoch'] == result['best_epoch']


def test_a_missing_best_checkpoint_of_an_earlier_epoch_is_named_missing(runs, micro_ave, tmp_path,
                                                                        capfd):
    state = load_checkpoint(runs / 'run2' / LAST)
    assert state['best']['epoch'] == 1 < state['epoch']   # the micro set: the first epoch wins
    copied = only_last(runs / 'run2', tmp_path)
    result = main('supervised', ['--resume', str(copied / LAST), '--n_epoch', '3',
                                 '--data_root', str(micro_ave), '--no_progress'])
    out = capfd.readouterr().out
    assert f"the best checkpoint {state['best']['checkpoint']} (epoch 1) is in neither" in out
    metrics = json.loads((copied / 'metrics.json').read_text())
    # Epoch 3 does not beat epoch 1 here (val accuracy 0 throughout), so no file is named,
    # rather than one that does not exist.
    assert metrics['best_epoch'] == 1 and metrics['best_checkpoint'] is None
    assert not list(copied.glob(BEST_GLOB)) and metrics == {k: result[k] for k in metrics}
    assert 'checkpoint: none (the file of epoch 1 is missing)' in out
