"""Beyond the AVE release: data that describe their own sizes, and features streamed from
the files (bigger than memory). Several processes: tests/test_distributed.py."""
import functools
import json
import os

import h5py
import numpy as np
import pytest
import torch

from dataset.ave import feature_bytes, load_ave
from dataset.layout import AVE, CLASSES_FILE, DataSpec, FEATURE_KEY, VISUAL_FILE
from dataset.synthetic import generate
from helpers import TINY_FLAGS, user_error
from main import main
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.memory import release_freed_memory, reuse_freed_memory

QUIET = ['--no_progress', '--num_threads', '1']


@pytest.fixture(scope='module')
def other_sizes(tmp_path_factory):
    """A set of 5 classes and 6 segments per video, with classes.txt (14 videos)."""
    out = tmp_path_factory.mktemp('other_sizes')
    generate(out, videos=14, background=2, seed=3, classes=5, segments=6, progress=False)
    return out


def train(setting, data_root, run, *flags):
    return main(setting, ['--data_root', str(data_root), '--snapshot_pref', str(run),
                          *TINY_FLAGS, *QUIET, *map(str, flags)])


def weights(path):
    return load_checkpoint(path)['model']


# ----------------------------------------------------------------------------- self-describing

def test_the_data_give_classes_segments_shapes_and_names(other_sizes):
    data = load_ave(other_sizes, progress=False)
    names = tuple((other_sizes / CLASSES_FILE).read_text().splitlines())
    assert len(names) == 5 and data.spec == DataSpec(5, 6, 128, (7, 7, 512), names)
    assert data.segment.shape[1] == 6 and int(data.segment.max()) <= 5


def test_other_sizes_train_evaluate_and_predict_with_their_class_names(other_sizes, tmp_path,
                                                                          capsys):
    summary = train('supervised', other_sizes, tmp_path / 'run', '--n_epoch', 1)
    last = load_checkpoint(tmp_path / 'run' / 'last.pth.tar')
    names = (other_sizes / CLASSES_FILE).read_text().splitlines()
    assert last['data'] == {'class_names': names, 'num_segments': 6, 'audio_dim': 128,
                            'visual_shape': [7, 7, 512]}
    report = json.loads((tmp_path / 'run' / 'report.json').read_text())
    assert report['splits']['test']['labels'] == names + ['background']
    result = main('supervised', ['--data_root', str(other_sizes), '--evaluate', '--resume',
                                 str(tmp_path / 'run' / 'last.pth.tar'), *QUIET])
    assert result['test_accuracy'] == pytest.approx(summary['test_accuracy'])

    from tools.predict import main as predict
    doc = predict(['--checkpoint', str(tmp_path / 'run' / 'last.pth.tar'), '--data_root',
                   str(other_sizes), '--out', str(tmp_path / 'p.json'), '--no_progress'])
    video = doc['videos'][0]
    assert len(video['segments']) == 6
    assert {s['class_name'] for s in video['segments']} <= set(names) | {'background'}


def test_a_checkpoint_on_data_of_another_shape_is_one_line_naming_the_shape(
        other_sizes, micro_ave, tmp_path, capsys):
    train('supervised', other_sizes, tmp_path / 'run', '--n_epoch', 1)
    last = tmp_path / 'run' / 'last.pth.tar'
    line = user_error(capsys, 'supervised', ['--data_root', micro_ave, '--evaluate', '--resume',
                                             last, *QUIET])
    assert 'event classes 5' in line and 'these data have 28' in line
    line = user_error(capsys, 'supervised', ['--data_root', micro_ave, '--resume', last,
                                             '--n_epoch', 2, '--snapshot_pref', tmp_path / 'again',
                                             *QUIET])
    assert 'event classes 5' in line
    # The same number of classes with another segment count: the segments are named.
    six = tmp_path / 'six'
    generate(six, videos=14, background=2, seed=3, classes=5, segments=8, progress=False)
    line = user_error(capsys, 'supervised', ['--data_root', six, '--evaluate', '--resume', last,
                                             *QUIET])
    assert 'segments per video 6' in line and 'these data have 8' in line


def test_without_classes_txt_names_are_class_i_and_a_wrong_one_is_refused(
        other_sizes, tmp_path, capsys):
    data = tmp_path / 'data'
    data.mkdir()
    for f in other_sizes.iterdir():
        if f.name != CLASSES_FILE:
            (data / f.name).symlink_to(f)
    assert load_ave(data, progress=False).spec.class_names == tuple(f'class_{c}' for c in range(5))
    (data / CLASSES_FILE).write_text('a\nb\nc\n')
    line = user_error(capsys, 'supervised', ['--data_root', data, '--snapshot_pref',
                                             tmp_path / 'run', *QUIET])
    assert CLASSES_FILE in line and 'names 3 classes' in line and '5 event classes' in line
    (data / CLASSES_FILE).write_text('a\nb\nb\nd\ne\n')
    assert 'a name twice' in user_error(capsys, 'supervised', [
        '--data_root', data, '--snapshot_pref', tmp_path / 'run', *QUIET])


def test_a_checkpoint_written_before_data_were_recorded_still_evaluates_and_resumes(
        micro_ave, tmp_path):
    train('supervised', micro_ave, tmp_path / 'run', '--n_epoch', 1)
    state = load_checkpoint(tmp_path / 'run' / 'last.pth.tar')
    assert state['data'] == AVE.to_dict()
    del state['data']                  # as the main before this version wrote it
    save_checkpoint(state, tmp_path / 'old.pth.tar')
    main('supervised', ['--data_root', str(micro_ave), '--evaluate', '--resume',
                        str(tmp_path / 'old.pth.tar'), *QUIET])
    resumed = main('supervised', ['--data_root', str(micro_ave), '--resume',
                                  str(tmp_path / 'old.pth.tar'), '--n_epoch', '2',
                                  '--snapshot_pref', str(tmp_path / 'resumed'), *QUIET])
    assert resumed['epochs_done'] == 2


# ----------------------------------------------------------------------------- streaming

@pytest.mark.parametrize('setting, workers', [('supervised', 2), ('weak', 2), ('supervised', 0)])
def test_streamed_training_is_bit_identical_to_in_memory(setting, workers, micro_ave, tmp_path,
                                                         capfd):
    memory = train(setting, micro_ave, tmp_path / 'memory', '--n_epoch', 1,
                   '--data_in_memory', 'true', '--batch_size', 5)
    streamed = train(setting, micro_ave, tmp_path / 'stream', '--n_epoch', 1,
                     '--data_in_memory', 'false', '--num_workers', workers, '--prefetch', 1,
                     '--batch_size', 5)
    assert ('streamed from the files by 2 worker processes' if workers else
            'streamed from the files by the training process') in capfd.readouterr().out
    a, b = weights(tmp_path / 'memory' / 'last.pth.tar'), weights(tmp_path / 'stream' / 'last.pth.tar')
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert memory['history'][0]['train'] == streamed['history'][0]['train']


def test_auto_streams_when_the_features_would_fill_half_the_free_memory(micro_ave):
    memory = load_ave(micro_ave, progress=False)
    needed = memory.audio.nbytes + memory.visual.nbytes
    assert feature_bytes(len(memory.source_rows), memory.spec, torch.float32) == needed == memory.feature_bytes
    for budget, in_memory in ((2 * needed, True), (2 * needed - 1, False), (None, True)):
        data = load_ave(micro_ave, progress=False, in_memory='auto', memory_budget=budget)
        assert data.in_memory == in_memory and (data.audio is None) != in_memory


def mark_worker(folder, worker_id):
    (folder / f'worker{worker_id}').write_text(str(os.getpid()))


def test_streaming_workers_run_the_data_s_worker_init_and_release_freed_memory(micro_ave,
                                                                              tmp_path):
    data = load_ave(micro_ave, progress=False, in_memory=False, workers=2)
    data.worker_init = functools.partial(mark_worker, tmp_path)
    rows = data.splits['train']
    assert sum(len(r) for r, _, _ in data.batches(list(rows.split(4)))) == len(rows)
    pids = {(tmp_path / f'worker{i}').read_text() for i in (0, 1)}
    assert len(pids) == 2 and str(os.getpid()) not in pids        # two processes, not this one
    # What main.py hands the workers: glibc's defaults again, after --reuse_memory.
    if reuse_freed_memory():
        assert release_freed_memory()


def test_a_nan_met_while_streaming_is_one_line_naming_file_and_row(data, tmp_path, capsys):
    visual = data / VISUAL_FILE
    values = h5py.File(visual.resolve(), 'r')[FEATURE_KEY][()]
    values[3, 2, 0, 0, 0] = np.nan
    visual.unlink()
    with h5py.File(visual, 'w') as f:
        f[FEATURE_KEY] = values
    line = user_error(capsys, 'supervised', ['--data_root', data, '--snapshot_pref',
                                             tmp_path / 'run', '--data_in_memory', 'false',
                                             '--num_workers', 1, *TINY_FLAGS, *QUIET])
    assert str(visual) in line and 'NaN or Inf values in video 3' in line
