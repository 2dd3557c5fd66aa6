"""Every bad input ends in one line naming the culprit and the fix, exit status 2, no traceback.

Most cases run the programs in this process (main.main, as supv_main.py and
weak_main.py do); a few run the shell scripts as a user would. Each data case breaks one file
of a private copy of the micro set (the other files are links to the shared set).
"""
import os
import random
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import main as program
from dataset.ave import DataError, load_ave
from tests.helpers import REPO, TINY_FLAGS, user_error
from engine.checkpoint import LAST, load_checkpoint, save_checkpoint
from main import main

KEY = 'avadataset'
NAN_ROW = 5   # a video of the micro set (every row is in some split)


def read(path, key=KEY):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def write(path, value, key=KEY):
    path.unlink(missing_ok=True)   # a link to the shared set: never write through it
    with h5py.File(path, 'w') as f:
        f.create_dataset(key, data=value)


def train_argv(data, tmp_path, *extra):
    return ['--data_root', data, '--snapshot_pref', tmp_path / 'run', '--n_epoch', 1,
            '--batch_size', 4, '--num_threads', 1, '--no_progress', *TINY_FLAGS, *extra]


# ----------------------------------------------------------------------------- data folder

def missing(name):
    return lambda d: (d / name).unlink()


def change(name, edit, key=KEY, new_key=None):
    """Rewrite file `name` with edit(its array) under `new_key` (default: the same key)."""
    def apply(d):
        write(d / name, edit(read(d / name, key)), new_key or key)
    return apply


def set_at(index, value):
    def edit(a):
        a = a.copy()
        a[index] = value
        return a
    return edit


def not_one_hot(a):
    a = a.copy()
    a[3] = 0
    a[3, ..., [1, 28]] = 1
    return a


def key_is_a_group(d):
    (d / 'labels.h5').unlink()
    with h5py.File(d / 'labels.h5', 'w') as f:
        f.create_group(KEY).create_dataset('labels', data=np.zeros(3))


def overlapping_orders(d):
    val = read(d / 'val_order.h5', 'order')
    write(d / 'test_order.h5', np.r_[read(d / 'test_order.h5', 'order'), val[:1]], 'order')


def truncated(name):
    def apply(d):
        content = (d / name).read_bytes()
        (d / name).unlink()
        (d / name).write_bytes(content[:len(content) // 2])
    return apply


def random_bytes(name):
    def apply(d):
        (d / name).unlink()
        (d / name).write_bytes(random.Random(0).randbytes(4096))
    return apply


FETCH = 'Google Drive.*dataset.synthetic'   # where the feature files come from
BUILD = 'Annotations.txt by `python -m dataset.labels`'   # and the label and order files
DATA_CASES = [
    # (id, setting, break the folder, expected in the one line: culprit ... fix)
    ('data_root is a file', 'supervised', None, r'data folder .*labels.h5 is a file, not a folder; pass --data_root'),
    *[(f'{name} missing', 'supervised', missing(name), f'{name}.* not found in data folder .*; .*{FETCH}')
      for name in ('audio_feature.h5', 'visual_feature.h5')],
    *[(f'{name} missing', 'supervised', missing(name), f'{name} not found in data folder .*; .*{BUILD}')
      for name in ('labels.h5', 'train_order.h5', 'val_order.h5', 'test_order.h5')],
    ('mil_labels.h5 missing', 'weak', missing('mil_labels.h5'), f'mil_labels.h5 not found .*{BUILD}'),
    *[(f'{name} missing', 'weak', missing(name), f'{name} not found .*--no_background')
      for name in ('audio_feature_noisy.h5', 'visual_feature_noisy.h5', 'labels_noisy.h5')],
    ('wrong key', 'supervised', change('labels.h5', lambda a: a, new_key='labels'),
     r"labels.h5 has no key 'avadataset' \(it has: labels\); AVE files store their array under"),
    ('wrong order key', 'supervised', change('test_order.h5', lambda a: a, 'order', 'idx'),
     r"test_order.h5 has no key 'order' \(it has: idx\)"),
    ('key is a group', 'supervised', key_is_a_group, "labels.h5: 'avadataset' is a group, not an array"),
    ('truncated features', 'supervised', truncated('visual_feature.h5'),
     'visual_feature.h5 is not a readable HDF5 file .truncated or corrupt.*re-download or regenerate'),
    ('truncated order', 'supervised', truncated('val_order.h5'), 'val_order.h5 is not a readable HDF5'),
    ('truncated background', 'weak', truncated('audio_feature_noisy.h5'),
     'audio_feature_noisy.h5 is not a readable HDF5 file'),
    ('random bytes', 'supervised', random_bytes('audio_feature.h5'),
     'audio_feature.h5 is not a readable HDF5 file.*re-download or regenerate'),
    ('video counts disagree', 'supervised', change('audio_feature.h5', lambda a: a[:-1]),
     r'files disagree on the number of videos \(audio_feature.h5: 15, visual_feature.h5: 16.*same release'),
    ('audio segments', 'supervised', change('audio_feature.h5', lambda a: a[:, :8]),
     r'audio_feature.h5 has 8 segments per video but .*visual_feature.h5 has 10; .*same extraction'),
    ('label segments', 'supervised', change('labels.h5', lambda a: a[:, :9]),
     r'audio_feature.h5 has segments per video 10, but .*labels.h5 has 9; .*same extraction'),
    ('wrong visual shape', 'supervised', change('visual_feature.h5', lambda a: a.reshape(16, 10, 49, 512)),
     r'visual_feature.h5 has shape \(16, 10, 49, 512\), expected \(N, T, H, W, V\) visual maps'),
    ('wrong label width', 'supervised', change('labels.h5', lambda a: a[..., :1]),
     r'labels.h5 has shape \(16, 10, 1\), expected \(N, T, C \+ 1\)'),
    ('background shape', 'weak', change('visual_feature_noisy.h5', lambda a: a[..., :256]),
     r'visual_feature_noisy.h5 has visual maps of shape .*7, 7, 256.*, but .*visual_feature.h5 has '
     r'\(7, 7, 512\)'),
    ('mil count disagrees', 'weak', change('mil_labels.h5', lambda a: a[:-1]),
     'files disagree on the number of videos .*mil_labels.h5: 15'),
    ('background counts disagree', 'weak', change('labels_noisy.h5', lambda a: a[:-1]),
     'files disagree .*labels_noisy.h5: 1'),
    ('integer features', 'supervised', change('audio_feature.h5', lambda a: a.astype(np.int32)),
     'audio_feature.h5 holds int32 values; features must be floats'),
    ('labels not one-hot', 'supervised', change('labels.h5', not_one_hot),
     r'labels.h5 is not one-hot at video row 3, segment 0 .*each row needs exactly one 1'),
    ('mil labels not one-hot', 'weak', change('mil_labels.h5', not_one_hot),
     r'mil_labels.h5 is not one-hot at video row 3 '),
    ('background labels not one-hot', 'weak', change('labels_noisy.h5', set_at((1, 0), 1)),
     r'labels_noisy.h5 is not one-hot at video row 1 '),
    ('order out of range', 'supervised', change('val_order.h5', set_at(0, 10_000), 'order'),
     'val_order.h5 has index 10000 out of range 0..15 .*regenerate the order files'),
    ('order negative', 'supervised', change('test_order.h5', set_at(0, -1), 'order'),
     'test_order.h5 has index -1 out of range'),
    ('order repeats a row', 'supervised', change('train_order.h5', lambda a: np.r_[a, a[:1]], 'order'),
     'train_order.h5 lists row .* more than once; each video belongs to a split once'),
    ('orders overlap', 'supervised', overlapping_orders,
     'val_order.h5 and test_order.h5 share 1 rows .*; the splits must be disjoint'),
    ('order empty', 'supervised', change('val_order.h5', lambda a: a[:0], 'order'),
     'val_order.h5 is empty; every split needs at least one video'),
    ('order of floats', 'supervised', change('train_order.h5', lambda a: a.astype(float), 'order'),
     'train_order.h5 holds float64 .*expected a 1-D array of integer row indices .regenerate'),
    ('NaN features', 'supervised', change('visual_feature.h5', set_at((NAN_ROW, 3, 1, 1, 7), np.nan)),
     f'visual_feature.h5 has NaN or Inf values in video {NAN_ROW}; re-extract'),
    ('Inf features', 'supervised', change('audio_feature.h5', set_at((NAN_ROW, 0, 0), np.inf)),
     f'audio_feature.h5 has NaN or Inf values in video {NAN_ROW}'),
    ('NaN background features', 'weak', change('visual_feature_noisy.h5', set_at((1, 9, 6, 6, 0), np.nan)),
     'visual_feature_noisy.h5 has NaN or Inf values in video 1; .*pass --no_background'),
]
@pytest.mark.parametrize('setting, broken, expected', [c[1:] for c in DATA_CASES],
                         ids=[c[0] for c in DATA_CASES])
def test_bad_data_folder(setting, broken, expected, data, tmp_path, capsys):
    root = data
    if broken is None:
        root = data / 'labels.h5'
    else:
        broken(data)
    line = user_error(capsys, setting, train_argv(root, tmp_path))
    assert re.search(expected, line), line
    assert not (tmp_path / 'run').exists(), 'a run that never trained leaves no folder behind'


def test_missing_data_folder_names_the_flag(tmp_path, capsys):
    line = user_error(capsys, 'supervised', train_argv(tmp_path / 'nowhere', tmp_path))
    assert f'data folder {tmp_path / "nowhere"} does not exist; pass --data_root DIR' in line


def corruptions(path, key):
    """{what: damaged bytes} of the HDF5 file at `path`: damage that no reader can take for a
    good file (truncation, a broken signature, a renamed key, garbage in the array)."""
    good = path.read_bytes()
    with h5py.File(path, 'r') as f:
        start, size = f[key].id.get_offset(), f[key].id.get_storage_size()
    damaged = {f'cut to {share:.0%}': good[:int(len(good) * share)] for share in (0.1, 0.5, 0.95)}
    damaged['signature'] = b'\0' * 8 + good[8:]
    damaged['key renamed'] = good.replace(key.encode(), b'x' * len(key))
    # 0xff bytes are NaN as floats and -1 as integers: neither a label nor a row index.
    damaged['array overwritten'] = good[:start] + b'\xff' * size + good[start + size:]
    return damaged


@pytest.mark.parametrize('name, key', [('labels.h5', KEY), ('train_order.h5', 'order'),
                                       ('mil_labels.h5', KEY)])
def test_every_damaged_label_or_order_file_is_one_data_error(name, key, data):
    failures = {}
    for what, content in corruptions(data / name, key).items():
        (data / name).unlink()
        (data / name).write_bytes(content)
        with pytest.raises(DataError) as e:
            load_ave(data, setting='weak', progress=False)
        assert name in str(e.value) and '\n' not in str(e.value), (what, e.value)
        failures[what] = str(e.value)
    assert len(failures) == 6


# ----------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope='module')
def runs(micro_ave, tmp_path_factory):
    """{setting: run folder} of a 1-epoch run of each setting on the micro set."""
    folders = {}
    for setting in ('supervised', 'weak'):
        parent = tmp_path_factory.mktemp(setting)
        main(setting, [str(a) for a in train_argv(micro_ave, parent)])
        folders[setting] = parent / 'run'
    return folders


def best(folder):
    [path] = folder.glob('model_epoch_*_best_model.pth.tar')
    return path


def edited(src, dest, edit):
    """A copy of checkpoint `src` at `dest`, changed by edit(state)."""
    state = load_checkpoint(src)
    edit(state)
    save_checkpoint(state, dest)
    return dest


def evaluate_argv(data, ckpt, *extra):
    return ['--evaluate', '--resume', ckpt, '--data_root', data, '--no_progress', *extra]


def set_config(key, value):
    return lambda state: state['config'].__setitem__(key, value)


def set_model_arg(key, value):
    return lambda state: state['model_args'].__setitem__(key, value)


def drop_weight(state):
    del state['model'][next(iter(state['model']))]


CHECKPOINT_CASES = [
    # (id, setting, argv(data, runs, tmp_path), expected in the line)
    ('resume path missing', 'supervised',
     lambda d, r, t: ['--resume', t / 'nowhere.pth.tar', '--data_root', d],
     r'checkpoint .*nowhere.pth.tar not found; pass --resume with a .pth.tar file'),
    ('evaluate without --resume', 'supervised', lambda d, r, t: ['--evaluate', '--data_root', d],
     '--evaluate needs --resume CKPT'),
    ('evaluate a missing checkpoint', 'weak', lambda d, r, t: evaluate_argv(d, t / 'gone.pth.tar'),
     'checkpoint .*gone.pth.tar not found'),
    ('weak checkpoint, supervised program', 'supervised',
     lambda d, r, t: evaluate_argv(d, best(r['weak'])),
     'saved by the weak setting, not supervised; use weak_train.sh / weak_test.sh'),
    ('supervised checkpoint, weak program', 'weak',
     lambda d, r, t: ['--resume', r['supervised'] / LAST, '--data_root', d],
     'saved by the supervised setting, not weak; use supv_train.sh / supv_test.sh'),
    ('weights of another model size', 'supervised',
     lambda d, r, t: evaluate_argv(d, edited(best(r['supervised']), t / 'wide.pth.tar',
                                             set_model_arg('d_model', 16))),
     r'wide.pth.tar does not fit the model it describes \(different shape: .*\(\+\d+ more\)\); '
     '.*use an unmodified checkpoint'),
    ('a weight missing', 'weak',
     lambda d, r, t: evaluate_argv(d, edited(best(r['weak']), t / 'less.pth.tar', drop_weight)),
     r'less.pth.tar does not fit the model it describes \(missing: [\w.]+\); it was saved by '
     'the weak setting'),
    ('model and data description disagree', 'supervised',
     lambda d, r, t: evaluate_argv(d, edited(best(r['supervised']), t / 'ten.pth.tar',
                                             set_model_arg('num_classes', 10))),
     r"ten.pth.tar describes its data \({'num_classes': 28, .*\) otherwise than its model "
     r"\({'num_classes': 10, "),
    ('resume with another model size', 'supervised',
     lambda d, r, t: ['--resume', r['supervised'] / LAST, '--d_model', 16, '--data_root', d],
     r"--d_model 16 differs from the value 8 stored in .*last.pth.tar; a resumed run keeps "),
    ('evaluate with another model size', 'weak',
     lambda d, r, t: evaluate_argv(d, best(r['weak']), '--agta_hidden', 16),
     '--agta_hidden is a training flag, and weak_main.py only evaluates here'),
    ('truncated checkpoint', 'supervised',
     lambda d, r, t: evaluate_argv(d, cut(r['supervised'] / LAST, t / 'cut.pth.tar')),
     'checkpoint .*cut.pth.tar is corrupt or truncated .*; use another checkpoint'),
    ('random bytes as checkpoint', 'weak',
     lambda d, r, t: ['--resume', noise(t / 'noise.pth.tar'), '--data_root', d],
     "noise.pth.tar is not a checkpoint \\(it is neither of torch.save's formats\\)"),
    ('empty checkpoint', 'supervised', lambda d, r, t: evaluate_argv(d, empty(t / 'empty.pth.tar')),
     'empty.pth.tar is not a checkpoint \\(it is an empty file\\)'),
    ('plain state dict', 'supervised',
     lambda d, r, t: evaluate_argv(d, plain(r['supervised'], t / 'plain.pth.tar')),
     'plain.pth.tar is not a checkpoint of this repository'),
    ('resume training from a best checkpoint', 'supervised',
     lambda d, r, t: ['--resume', best(r['supervised']), '--data_root', d],
     r'holds only a model; resume training from the last.pth.tar of its run folder'),
]


def cut(src, dest):
    content = src.read_bytes()
    dest.write_bytes(content[:len(content) * 2 // 3])
    return dest


def noise(dest):
    dest.write_bytes(random.Random(1).randbytes(10_000))
    return dest


def empty(dest):
    dest.write_bytes(b'')
    return dest


def plain(run, dest):
    torch.save(load_checkpoint(run / LAST)['model'], dest)
    return dest


@pytest.mark.parametrize('setting, make_argv, expected', [c[1:] for c in CHECKPOINT_CASES],
                         ids=[c[0] for c in CHECKPOINT_CASES])
def test_bad_checkpoint(setting, make_argv, expected, runs, micro_ave, tmp_path, capsys):
    line = user_error(capsys, setting, make_argv(micro_ave, runs, tmp_path))
    assert re.search(expected, line), line


# ----------------------------------------------------------------------------- flags, config

FLAG_CASES = [
    # (id, setting, argv, expected in the line)
    ('unknown flag', 'supervised', ['--learning_rate', '0.1'],
     'unrecognized arguments: --learning_rate 0.1 (did you mean --lr?); see supv_main.py --help'),
    ('flag of another repository', 'supervised', ['--epochs', '5'],
     'unrecognized arguments: --epochs 5 (did you mean --n_epoch?)'),
    ('dashes for underscores', 'weak', ['--data-root', 'x'],
     'unrecognized arguments: --data-root x (did you mean --data_root?)'),
    ('an abbreviation', 'supervised', ['--data', 'x'],
     'unrecognized arguments: --data x (did you mean --data_root?)'),
    ('a typo', 'supervised', ['--n_epochs', '3', '--learnin_rate', '1'],
     'unrecognized arguments: --n_epochs 3 --learnin_rate 1 (did you mean --n_epoch, --lr?)'),
    ('weak-only flag', 'supervised', ['--no_background'],
     'unrecognized arguments: --no_background; see supv_main.py --help'),
    ('flag without value', 'weak', ['--lr'], 'argument --lr: expected one argument; see weak_main.py'),
    ('not a number', 'supervised', ['--lr', 'fast'], "argument --lr: invalid float value: 'fast'"),
    ('bad choice', 'weak', ['--select_on', 'train'], "argument --select_on: invalid choice: 'train'"),
    ('negative lr', 'supervised', ['--lr', '-0.001'], '--lr -0.001 is invalid: must be > 0'),
    ('zero batch size', 'weak', ['--batch_size', '0'], '--batch_size 0 is invalid: must be > 0'),
    ('unknown device', 'supervised', ['--device', 'tpu'],
     "--device 'tpu' is invalid: use auto, cpu, cuda or cuda:N"),
    ('dropout of 1', 'weak', ['--encoder_dropout', '1'], '--encoder_dropout 1.0 is invalid'),
]


@pytest.mark.parametrize('setting, flags, expected', [c[1:] for c in FLAG_CASES],
                         ids=[c[0] for c in FLAG_CASES])
def test_bad_flag(setting, flags, expected, micro_ave, tmp_path, capsys):
    line = user_error(capsys, setting, [*train_argv(micro_ave, tmp_path), *flags])
    assert expected in line, line
    assert not (tmp_path / 'run').exists(), 'flags are checked before anything is written'


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_device_without_cuda(micro_ave, tmp_path, capsys):
    line = user_error(capsys, 'supervised', [*train_argv(micro_ave, tmp_path), '--device', 'cuda'])
    assert '--device cuda: no CUDA device is available here; use --device cpu' in line


@pytest.mark.parametrize('text, expected', [
    ('learning_rate: 0.1\n', "unknown config key 'learning_rate'; see --help"),
    ('lr: [0.1\n', 'is not valid YAML'),
    ('batch_size: many\n', 'batch_size must be an integer'),
    ('- lr\n', 'must be a mapping of key: value lines'),
])
def test_bad_config_file(text, expected, micro_ave, tmp_path, capsys):
    path = tmp_path / 'mine.yaml'
    path.write_text(text)
    line = user_error(capsys, 'weak', [*train_argv(micro_ave, tmp_path), '--config', path])
    assert 'mine.yaml' in line and expected in line, line


def test_missing_config_file(micro_ave, tmp_path, capsys):
    line = user_error(capsys, 'supervised', [*train_argv(micro_ave, tmp_path),
                                             '--config', tmp_path / 'none.yaml'])
    assert 'cannot read config file' in line and 'none.yaml' in line and '--config' in line


# ----------------------------------------------------------------------------- run folder

@pytest.mark.parametrize('where', ['under a file', 'in /proc', 'a file'])
def test_unwritable_snapshot_dir_is_refused_before_loading_data(
        where, micro_ave, tmp_path, monkeypatch, capsys):
    (tmp_path / 'file').write_text('')
    snapshot = {'under a file': tmp_path / 'file' / 'run', 'in /proc': '/proc/dmin_run',
                'a file': tmp_path / 'file'}[where]
    monkeypatch.setattr(program, 'load_ave', lambda *a, **k: pytest.fail('data was loaded'))
    line = user_error(capsys, 'supervised', [*train_argv(micro_ave, tmp_path),
                                             '--snapshot_pref', snapshot])
    assert f'--snapshot_pref {snapshot} is' in line and 'choose a' in line, line


def test_run_folder_with_a_run_is_not_reused(runs, micro_ave, capsys):
    line = user_error(capsys, 'supervised', [*train_argv(micro_ave, runs['supervised'].parent)])
    assert f"continue it with --resume {runs['supervised'] / LAST}" in line
    assert 'start afresh with --overwrite' in line


def test_run_folder_killed_before_its_first_last_checkpoint_suggests_only_overwrite(
        runs, micro_ave, tmp_path, capsys):
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / best(runs['weak']).name).write_bytes(best(runs['weak']).read_bytes())
    line = user_error(capsys, 'weak', train_argv(micro_ave, tmp_path))
    assert 'stopped before saving last.pth.tar, so it cannot be resumed' in line
    assert '--overwrite' in line and '--resume' not in line


# ----------------------------------------------------------------------------- as a user runs them

SCRIPT_CASES = {   # name: (script, its arguments from the micro set, the runs, tmp_path)
    'missing data folder': ('supv_train.sh', lambda d, r, t: [
        '--data_root', t / 'nowhere', '--snapshot_pref', t / 'run']),
    'misspelt flag': ('weak_train.sh', lambda d, r, t: [
        '--data_root', d, '--snapshot_pref', t / 'run', '--batch_sise', 4]),
    'corrupt checkpoint': ('supv_test.sh', lambda d, r, t: [
        '--data_root', d, '--resume', cut(best(r['supervised']), t / 'cut.pth.tar')]),
    'other setting': ('weak_test.sh', lambda d, r, t: [
        '--data_root', d, '--resume', best(r['supervised'])]),
    'unwritable run folder': ('supv_train.sh', lambda d, r, t: [
        '--data_root', d, '--snapshot_pref', t / 'file' / 'run']),
}


def test_scripts_fail_with_one_line_and_no_traceback(runs, micro_ave, tmp_path):
    """Each script as a user runs it, on a bad input: exit 2 and one 'error:' line. The five
    run side by side (they only start Python and stop)."""
    (tmp_path / 'file').write_text('')
    env = dict(os.environ, PYTHON=sys.executable)
    procs = {name: subprocess.Popen(['bash', str(REPO / script),
                                     *map(str, args(micro_ave, runs, tmp_path))],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=REPO)
             for name, (script, args) in SCRIPT_CASES.items()}
    for name, proc in procs.items():
        out, err = proc.communicate()
        assert proc.returncode == 2, (name, out, err)
        assert 'Traceback' not in err + out, name
        [line] = err.strip().splitlines()
        assert line.startswith('error: '), name
