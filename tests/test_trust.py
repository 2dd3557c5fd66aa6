"""Nothing a run leaves behind is silently wrong, and a checkpoint from a stranger runs no code.

Each case goes through the real entry points (main.main in this process, or the scripts as a
user runs them) and asserts one `error:` line, exit status 2 and nothing lost or written.
"""
import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import core.atomic
from main import main
from tests.helpers import REPO, TINY_FLAGS, printed_test_accuracy, run_script, user_error
from engine.checkpoint import BEST_GLOB, LAST, load_checkpoint, save_checkpoint

KEY = 'avadataset'


def strict_json(path):
    """The JSON file at `path`, refusing NaN and Infinity (which JSON does not have)."""
    def refuse(constant):
        raise AssertionError(f'{path} holds {constant}')
    return json.loads(path.read_text(), parse_constant=refuse)


def rewrite(path, edit, key=KEY):
    with h5py.File(path, 'r') as f:
        value = f[key][()]
    path.unlink()
    with h5py.File(path, 'w') as f:
        f.create_dataset(key, data=edit(value))


def train_argv(data, run, *extra):
    return ['--data_root', data, '--snapshot_pref', run, '--n_epoch', 1, '--batch_size', 4,
            '--num_threads', 1, '--no_progress', *TINY_FLAGS, *extra]


@pytest.fixture(scope='module')
def run(micro_ave, tmp_path_factory):
    """A 2-epoch supervised run on the micro set."""
    folder = tmp_path_factory.mktemp('trust') / 'run'
    main('supervised', [str(a) for a in train_argv(micro_ave, folder, '--n_epoch', 2)])
    return folder


# ----------------------------------------------------------------------------- non-finite numbers

@pytest.mark.parametrize('flag, value', [('--lr', 'inf'), ('--lr', 'nan'), ('--weight_decay', 'inf'),
                                         ('--lr_gamma', 'nan'), ('--clip_gradient', 'inf'),
                                         ('--dima_lambda', 'nan'), ('--class_ce_weight', 'inf'),
                                         ('--lr', '1e39'), ('--clip_gradient', '4e38')])
def test_non_finite_settings_are_refused_up_front(flag, value, micro_ave, tmp_path, capsys):
    """Training computes in float32: 1e39 is as infinite there as inf."""
    line = user_error(capsys, 'supervised', train_argv(micro_ave, tmp_path / 'run', flag, value))
    assert f'{flag} {float(value)!r} is invalid: must be a finite number (within float32' in line
    assert not (tmp_path / 'run').exists()


def test_a_config_value_beyond_float32_is_refused_like_the_flag(micro_ave, tmp_path, capsys):
    config = tmp_path / 'huge.yaml'
    config.write_text('lr: 1.0e+39\n')
    line = user_error(capsys, 'supervised', train_argv(micro_ave, tmp_path / 'run', '--config',
                                                       config))
    assert '--lr 1e+39 is invalid: must be a finite number (within float32' in line


def test_weights_that_turn_non_finite_stop_the_run_before_anything_is_saved(
        micro_ave, tmp_path, monkeypatch, capsys):
    """The loss of the epoch's last step is finite, but the step leaves an Inf weight."""
    real_step, steps = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 3:        # epoch 1 has 3 steps: 12 videos, batch 4
            with torch.no_grad():
                self.param_groups[0]['params'][0].view(-1)[0] = float('inf')
        return out

    monkeypatch.setattr(torch.optim.Adam, 'step', step)
    folder = tmp_path / 'run'
    line = user_error(capsys, 'supervised', train_argv(micro_ave, folder, '--n_epoch', 2))
    assert 'the weights became NaN or Inf in epoch 1; training stopped and no checkpoint was ' \
           'written' in line
    assert not list(folder.glob(BEST_GLOB)) and not (folder / LAST).exists()
    assert not (folder / 'metrics.json').exists()


def test_an_enormous_learning_rate_never_leaves_a_non_finite_model_or_json(
        micro_ave, tmp_path, capsys):
    """lr 1e30 breaks the first epoch: nothing of it is saved, so no file holds NaN."""
    folder = tmp_path / 'run'
    line = user_error(capsys, 'supervised', train_argv(micro_ave, folder, '--n_epoch', 3,
                                                       '--lr', '1e30', '--clip_gradient', '0'))
    assert 'loss became NaN or Inf at epoch 1' in line and 'no checkpoint was written' in line
    assert sorted(p.name for p in folder.iterdir()) == ['.lock', 'code', 'config.yaml',
                                                         'tensorboard', 'train.log']


# ----------------------------------------------------------------------------- one run per folder

def test_a_second_training_in_a_running_runs_folder_is_refused_with_its_pid(
        micro_ave, tmp_path, capsys):
    folder = tmp_path / 'run'
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys; from engine.run_dir import lock; from pathlib import '
         f'Path; Path({str(folder)!r}).mkdir(); lock(Path({str(folder)!r})); print("locked", '
         'flush=True); sys.stdin.read()'],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        line = user_error(capsys, 'supervised', train_argv(micro_ave, folder))
        assert f'--snapshot_pref {folder} is in use by another run (PID {holder.pid})' in line
        assert sorted(p.name for p in folder.iterdir()) == ['.lock']
    finally:
        holder.communicate('')
    # The lock died with its process (as after kill -9): the folder is free again.
    assert main('supervised', [str(a) for a in train_argv(micro_ave, folder)])['epochs_done'] == 1


# ----------------------------------------------------------------------------- checkpoints

def flip_tensor_bytes(src, dest):
    """A copy of checkpoint `src` with bytes inside one weight tensor's data changed."""
    content = bytearray(src.read_bytes())
    weight = next(iter(load_checkpoint(src)['model'].values()))
    at = bytes(content).find(weight.numpy().tobytes()[:32])
    assert at > 0
    content[at + 4:at + 8] = bytes(b ^ 0x5A for b in content[at + 4:at + 8])
    dest.write_bytes(bytes(content))
    return dest


def test_a_checkpoint_damaged_inside_its_tensors_is_refused_everywhere(
        run, micro_ave, tmp_path, capsys):
    damaged = flip_tensor_bytes(run / LAST, tmp_path / LAST)
    expected = f'checkpoint {damaged} is damaged: its contents do not match the checksum'
    assert expected in user_error(capsys, 'supervised', [
        '--evaluate', '--resume', damaged, '--data_root', micro_ave, '--no_progress'])
    assert expected in user_error(capsys, 'supervised', [
        '--resume', damaged, '--data_root', micro_ave, '--n_epoch', 3, '--no_progress'])
    proc = run_script('predict.sh', '--checkpoint', damaged, '--data_root', micro_ave,
                      '--out', tmp_path / 'p.json', check=False)
    assert proc.returncode == 2 and expected in proc.stderr
    assert not (tmp_path / 'p.json').exists()


def test_a_checkpoint_of_an_older_version_loads_with_one_warning(run, micro_ave, tmp_path, capsys):
    """As the previous version wrote them: no checksum, no model_args, numpy RNG state."""
    state = load_checkpoint(run / LAST)
    del state['model_args']
    state['rng']['numpy'] = np.random.get_state()
    torch.save(state, tmp_path / LAST)
    main('supervised', ['--evaluate', '--resume', str(tmp_path / LAST), '--data_root',
                        str(micro_ave), '--no_progress'])
    [warning] = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f'warning: {tmp_path / LAST} has no checksum')
    resumed = main('supervised', ['--resume', str(tmp_path / LAST), '--n_epoch', '3',
                                  '--data_root', str(micro_ave), '--no_progress'])
    assert resumed['epochs_done'] == 3 and len(resumed['history']) == 3


class Payload:
    """What a malicious checkpoint carries: unpickling it would create a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(run, micro_ave, tmp_path, capsys):
    marker = tmp_path / 'code_ran'
    state = load_checkpoint(run / LAST)
    state['history'].append(Payload(marker))
    evil = tmp_path / 'shared.pth.tar'
    torch.save(state, evil)
    refusal = f'error: checkpoint {evil} needs more than weights and plain values to load ' \
              '(posix.system), which could run code'
    proc = run_script('predict.sh', '--checkpoint', evil, '--data_root', micro_ave,
                      '--out', tmp_path / 'p.json', check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(refusal)
    assert proc.stderr.strip().count('\n') == 0
    for argv in (['--evaluate', '--resume', evil, '--data_root', micro_ave],
                 ['--resume', evil, '--n_epoch', 3]):
        assert user_error(capsys, 'supervised', argv).startswith(refusal)
    assert not marker.exists()


def forged(run, tmp_path, edit, name='forged.pth.tar'):
    state = load_checkpoint(run / LAST)
    edit(state)
    save_checkpoint(state, tmp_path / name)   # with a valid checksum: forged, not damaged
    return tmp_path / name


@pytest.mark.parametrize('edit, expected', [
    (lambda s: s.pop('epoch'), 'missing or mistyped fields: epoch (missing)'),
    (lambda s: s.__setitem__('config', [1]), 'config (list)'),
    (lambda s: s.__setitem__('epoch', '2'), 'epoch (str)'),
    (lambda s: s.__setitem__('history', {}), 'history (dict)'),
    (lambda s: s.pop('rng'), 'rng (missing)'),
    (lambda s: s['optimizer'].__setitem__('param_groups', []), 'holds a training state that cannot '
                                                               'be restored'),
    (lambda s: s['rng'].__setitem__('torch', 'x'), 'holds a training state that cannot be restored'),
    (lambda s: s['model_args'].__setitem__('d_model', 'wide'), 'holds model arguments its model '
                                                               'cannot be built from'),
    (lambda s: s['model'].__setitem__('head.relevance.bias', torch.zeros(3)),
     'does not fit the model it describes'),
    (lambda s: s['model']['head.relevance.bias'].fill_(float('nan')), 'holds NaN or Inf weights'),
    (lambda s: s['config'].__setitem__('batch_size', 'many'), 'batch_size must be an integer'),
    (lambda s: s['config'].__setitem__('lr', -1.0), 'holds a config value that cannot work'),
], ids=['no epoch', 'config a list', 'epoch a string', 'history a dict', 'no rng',
        'optimizer groups', 'rng mistyped', 'model_args mistyped', 'weight resized', 'NaN weight',
        'config value mistyped', 'config value out of range'])
def test_forged_checkpoints_with_missing_or_mistyped_fields(edit, expected, run, micro_ave,
                                                            tmp_path, capsys):
    path = forged(run, tmp_path, edit)
    line = user_error(capsys, 'supervised', ['--resume', path, '--data_root', micro_ave,
                                             '--n_epoch', 3, '--no_progress'])
    assert expected in line and str(path) in line, line


def test_files_are_created_with_the_users_umask(micro_ave, tmp_path):
    old = os.umask(0o027)
    try:
        main('supervised', [str(a) for a in train_argv(micro_ave, tmp_path / 'run')])
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / 'run').iterdir() if p.is_file()}
    assert set(modes.values()) == {0o640}, modes
    assert {LAST, 'metrics.json', 'config.yaml', 'report.json'} <= set(modes)


def test_a_full_disk_while_saving_names_the_disk_and_the_space_needed(tmp_path, monkeypatch):
    save_checkpoint({'model': {'w': torch.zeros(1000)}, 'config': {}, 'epoch': 1,
                     'setting': 'supervised'}, tmp_path / LAST)

    class FullDisk:
        def __init__(self, path, mode):
            self.file = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(28, os.strerror(28))

    monkeypatch.setattr(core.atomic, 'open', FullDisk, raising=False)
    with pytest.raises(core.atomic.UserError) as e:
        save_checkpoint({'model': {'w': torch.ones(1000)}, 'config': {}, 'epoch': 2,
                         'setting': 'supervised'}, tmp_path / LAST)
    assert re.search(rf'could not write {tmp_path / LAST} \(No space left on device: [\d.]+ MiB '
                     rf'free on the disk of {tmp_path}, [\d.]+ MiB needed\); the previous '
                     'last.pth.tar, if any, is intact', str(e.value)), e.value
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / LAST)['epoch'] == 1
    assert [p.name for p in tmp_path.iterdir()] == [LAST]


# ----------------------------------------------------------------------------- flags and config

def test_a_config_file_counts_like_flags_when_resuming(run, micro_ave, tmp_path, capsys):
    lr = tmp_path / 'lr.yaml'
    lr.write_text('lr: 0.1\n')
    line = user_error(capsys, 'supervised', ['--resume', run / LAST, '--config', lr])
    assert '--lr 0.1 differs from the value 0.0005 stored in' in line
    longer = tmp_path / 'longer.yaml'
    longer.write_text('n_epoch: 3\nsnapshot_pref: ' + str(tmp_path / 'continued') + '\n')
    result = main('supervised', ['--resume', str(run / LAST), '--config', str(longer),
                                 '--data_root', str(micro_ave), '--no_progress'])
    assert result['epochs_done'] == 3 and (tmp_path / 'continued' / LAST).is_file()


def test_n_epoch_0_says_there_is_nothing_to_do_and_writes_nothing(micro_ave, tmp_path, capsys):
    assert main('supervised', [str(a) for a in train_argv(micro_ave, tmp_path / 'run',
                                                          '--n_epoch', 0)]) is None
    assert 'nothing to train' in capsys.readouterr().out
    assert not (tmp_path / 'run').exists()


def test_a_config_file_that_is_not_text(micro_ave, tmp_path, capsys):
    (tmp_path / 'c.yaml').write_bytes(bytes(range(256)))
    line = user_error(capsys, 'supervised', train_argv(micro_ave, tmp_path / 'run', '--config',
                                                       tmp_path / 'c.yaml'))
    assert 'c.yaml is not text' in line


@pytest.mark.parametrize('name', ['metrics.json', LAST, 'model_epoch_1_top1_9.000_task_Supervised'
                                                        '_best_model.pth.tar', 'tensorboard'])
def test_odd_names_inside_a_run_folder(name, micro_ave, tmp_path, capsys):
    folder = tmp_path / 'run'
    folder.mkdir()
    if name == 'tensorboard':
        (folder / name).write_text('a file where the run keeps a folder')
    else:
        (folder / name).mkdir()
    for extra in ((), ('--overwrite',)):
        line = user_error(capsys, 'supervised', train_argv(micro_ave, folder, *extra))
        assert f'--snapshot_pref {folder} holds {name}, which is not what a run writes' in line


def test_ctrl_c_during_the_first_save_says_there_is_nothing_to_resume(
        micro_ave, tmp_path, monkeypatch, capsys):
    def interrupted(state, path):
        raise KeyboardInterrupt

    import engine.run_dir
    monkeypatch.setattr(engine.run_dir, 'save_checkpoint', interrupted)
    with pytest.raises(SystemExit) as e:
        main('supervised', [str(a) for a in train_argv(micro_ave, tmp_path / 'run')])
    assert e.value.code == 130
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith('interrupted: no epoch had finished, so there is nothing to resume')


def test_predict_with_an_unknown_device(run, micro_ave, tmp_path):
    proc = run_script('predict.sh', '--checkpoint', run / LAST, '--data_root', micro_ave,
                      '--out', tmp_path / 'p.json', '--device', 'tpu', check=False)
    assert proc.returncode == 2 and "--device 'tpu' is invalid" in proc.stderr


def test_widths_that_cannot_be_allocated_name_the_settings_to_lower(micro_ave, tmp_path, capsys):
    line = user_error(capsys, 'supervised', train_argv(micro_ave, tmp_path / 'run',
                                                       '--ff_dim', 2 ** 30))
    assert line.startswith('error: out of memory') and 'lower --d_model, --ff_dim' in line
    assert not (tmp_path / 'run').exists()


# ----------------------------------------------------------------------------- data

def test_float16_storage_refuses_features_it_cannot_hold(data, tmp_path, capsys):
    rewrite(data / 'audio_feature.h5', lambda a: np.where(np.arange(a.shape[0])[:, None, None] == 3,
                                                          1e5, a))
    line = user_error(capsys, 'supervised', train_argv(data, tmp_path / 'run', '--feature_dtype',
                                                       'float16'))
    assert 'audio_feature.h5 has values too large for torch.float16 in video 3' in line
    assert '--feature_dtype float32' in line


def test_background_labels_must_be_background(data, tmp_path, capsys):
    def as_class_5(a):
        a = a.copy()
        a[1] = 0
        a[1, 5] = 1
        return a
    rewrite(data / 'labels_noisy.h5', as_class_5)
    line = user_error(capsys, 'weak', train_argv(data, tmp_path / 'run'))
    assert 'labels_noisy.h5 labels background video 1 as class 5' in line


def test_a_video_with_two_event_classes_is_refused(data, tmp_path, capsys):
    with h5py.File(data / 'labels.h5', 'r') as f:
        labels = f[KEY][()]
    row = int(np.flatnonzero((labels[..., :28].sum(-1) > 0).sum(1) >= 2)[0])
    first = int(np.flatnonzero(labels[row].argmax(-1) < 28)[0])
    cls = int(labels[row, first].argmax())

    def mixed(a):
        a = a.copy()
        a[row, first] = 0
        a[row, first, (cls + 1) % 28] = 1
        return a
    rewrite(data / 'labels.h5', mixed)
    line = user_error(capsys, 'supervised', train_argv(data, tmp_path / 'run'))
    assert f'labels.h5 gives video row {row} segments of two event classes' in line


def test_labels_that_are_not_numbers(data, tmp_path, capsys):
    rewrite(data / 'mil_labels.h5', lambda a: np.full(a.shape, b'xyz'))
    line = user_error(capsys, 'weak', train_argv(data, tmp_path / 'run'))
    assert 'mil_labels.h5 holds |S3 values; labels are numbers' in line


def test_not_one_hot_names_the_file_row_even_when_evaluating(run, data, capsys):
    with h5py.File(data / 'test_order.h5', 'r') as f:
        row = int(f['order'][()][-1])

    def broken(a):
        a = a.copy()
        a[row, 4, :] = 0
        return a
    rewrite(data / 'labels.h5', broken)
    line = user_error(capsys, 'supervised', ['--evaluate', '--resume', run / LAST,
                                             '--data_root', data])
    assert f'labels.h5 is not one-hot at video row {row}, segment 4' in line


@pytest.mark.skipif(os.environ.get('HDF5_USE_FILE_LOCKING', '').upper() == 'FALSE',
                    reason='HDF5 file locking is turned off in this environment')
def test_a_data_file_in_use_by_another_process(data, tmp_path, capsys):
    path = data / 'labels.h5'
    real = path.resolve()
    path.unlink()
    path.write_bytes(real.read_bytes())
    holder = subprocess.Popen(
        [sys.executable, '-c', f'import h5py, sys; f = h5py.File({str(path)!r}, "r+"); '
         'print("open", flush=True); sys.stdin.read()'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'open'
        line = user_error(capsys, 'supervised', train_argv(data, tmp_path / 'run'))
    finally:
        holder.communicate('')
    assert f'{path} is in use by another process' in line and 'corrupt' not in line


def test_a_folder_named_like_a_data_file(data, tmp_path, capsys):
    (data / 'visual_feature.h5').unlink()
    (data / 'visual_feature.h5').mkdir()
    line = user_error(capsys, 'supervised', train_argv(data, tmp_path / 'run'))
    assert f'{data / "visual_feature.h5"} is a folder, not a file' in line


def test_weak_evaluation_needs_no_video_labels(run, data, micro_ave, tmp_path):
    weak = tmp_path / 'weak'
    main('weak', [str(a) for a in train_argv(micro_ave, weak)])
    (data / 'mil_labels.h5').unlink()
    proc = run_script('weak_test.sh', '--resume', weak / LAST, '--data_root', data, '--no_progress')
    recorded = json.loads((weak / 'metrics.json').read_text())['history'][-1]['test_accuracy']
    assert printed_test_accuracy(proc.stdout) == pytest.approx(recorded, abs=5e-4)
