"""engine/checkpoint.py: a checkpoint is data. Whatever a forger writes into one (and
recomputes the checksum for: it guards against damage, not forgery), resuming it either
refuses with one line or acts only inside its own run folder."""
import shutil

import pytest

from main import main
from tests.helpers import TINY_FLAGS, user_error
from engine.checkpoint import BEST_GLOB, LAST, best_name, is_best_name, load_checkpoint, \
    save_checkpoint


def train_argv(data, run, *extra):
    return ['--data_root', data, '--snapshot_pref', run, '--batch_size', 4, '--num_threads', 1,
            '--no_progress', *TINY_FLAGS, *extra]


@pytest.fixture(scope='module')
def run(micro_ave, tmp_path_factory):
    """A 2-epoch supervised run on the micro set."""
    folder = tmp_path_factory.mktemp('forged') / 'run'
    main('supervised', [str(a) for a in train_argv(micro_ave, folder, '--n_epoch', 2)])
    return folder


def forge(run, tmp_path, edit):
    """A copy of `run`'s folder two levels below tmp_path whose last.pth.tar was edited by
    `edit(state)` and saved with a fresh checksum, as anyone can."""
    folder = tmp_path / 'a' / 'b' / 'run'
    shutil.copytree(run, folder)
    state = load_checkpoint(folder / LAST)
    edit(state)
    save_checkpoint(state, folder / LAST)
    return folder


def test_best_names_are_exactly_what_best_name_gives():
    assert is_best_name(best_name(17, 78.10912, 'supervised'))
    assert is_best_name(best_name(3, 0.0, 'weak'))
    for name in ('../../victim.txt', f'../{best_name(1, 2.0, "weak")}', 'last.pth.tar',
                 best_name(1, 2.0, 'weak') + '/x', best_name(1, 2.0, 'weak').replace('1', '0', 1),
                 None, 7):
        assert not is_best_name(name), name


def test_a_forged_best_name_deletes_nothing_outside_the_run_folder(run, micro_ave, tmp_path,
                                                                  capsys):
    """The forged checkpoint names a file two folders up as its best, with a best accuracy
    every epoch beats: resuming it used to delete that file."""
    victim = tmp_path / 'a' / 'victim.txt'

    def edit(state):
        state['best'] = {**state['best'], 'checkpoint': '../../victim.txt', 'selected': -1.0}

    folder = forge(run, tmp_path, edit)
    victim.write_text('precious\n')
    line = user_error(capsys, 'supervised', ['--resume', folder / LAST, '--n_epoch', 3,
                                             '--data_root', micro_ave, '--no_progress'])
    assert f'{folder / LAST} holds an inconsistent training state' in line
    assert victim.read_text() == 'precious\n'
    assert load_checkpoint(folder / LAST)['epoch'] == 2          # nothing was trained


def test_a_best_name_that_is_a_path_is_never_removed_or_copied(tmp_path):
    from engine.run_dir import keep_best, remove_best
    folder, source = tmp_path / 'a' / 'run', tmp_path / 'a' / 'source'
    folder.mkdir(parents=True)
    source.mkdir()
    (tmp_path / 'victim.txt').write_text('precious\n')
    (source / 'secret.txt').write_text('secret\n')
    remove_best(folder, '../../victim.txt')
    assert not keep_best(folder, '../secret.txt', source)
    assert (tmp_path / 'victim.txt').read_text() == 'precious\n'
    assert sorted(p.name for p in folder.iterdir()) == []


def set_epoch(value):
    def edit(state):
        state['epoch'] = value
    return edit


def set_history(value):
    def edit(state):
        state['history'] = value
    return edit


def edit_record(key, value):
    def edit(state):
        state['history'][1][key] = value
    return edit


def set_best(**fields):
    def edit(state):
        state['best'] = {**state['best'], **fields}
    return edit


@pytest.mark.parametrize('edit, what', [
    (set_epoch(-3), 'epoch -3; a checkpoint'),
    (set_epoch(5), 'epoch 5 but 2 epoch records'),
    (set_history([1, 'x', None]), 'epoch 2 but 3 epoch records'),
    (lambda s: s.update(epoch=3, history=[1, 'x', None]), 'epoch record 1 is int'),
    (edit_record('epoch', 7), 'epoch record 2 says epoch 7'),
    (edit_record('val_accuracy', float('nan')), 'not a finite number'),
    (edit_record('lr', 'fast'), 'epoch record 2 has no float lr'),
    (set_best(epoch=2, val_accuracy=99.0), "best epoch says epoch 2, but its history's best "
                                           'epoch (1) has 1'),
    (set_best(extra=1), 'its best epoch has the fields'),
    (set_best(checkpoint='model_epoch_9_top1_1.000_task_Supervised_best_model.pth.tar'),
     'not as epoch 1 names it'),
], ids=['negative epoch', 'epoch beyond history', 'junk history', 'junk records',
        'record epoch', 'nan accuracy', 'lr not a number', 'best not the best', 'best fields',
        'best name of another epoch'])
def test_every_field_of_a_resumed_checkpoint_must_agree(edit, what, run, micro_ave, tmp_path,
                                                        capsys):
    folder = forge(run, tmp_path, edit)
    line = user_error(capsys, 'supervised', ['--resume', folder / LAST, '--n_epoch', 4,
                                             '--data_root', micro_ave, '--no_progress'])
    assert str(folder / LAST) in line and what in line, line
    # Nothing was trained or written: the run folder is as the forger left it.
    assert (folder / 'metrics.json').read_bytes() == (run / 'metrics.json').read_bytes()
    assert sorted(p.name for p in folder.glob(BEST_GLOB)) == \
        sorted(p.name for p in run.glob(BEST_GLOB))


def test_a_checkpoint_with_a_negative_epoch_is_not_evaluated(run, micro_ave, tmp_path, capsys):
    folder = forge(run, tmp_path, set_epoch(-3))
    line = user_error(capsys, 'supervised', ['--evaluate', '--resume', folder / LAST,
                                             '--data_root', micro_ave, '--no_progress'])
    assert 'says it was saved after epoch -3' in line
