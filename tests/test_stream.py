"""dataset/stream.py: features streamed from the files train on exactly the batches of the
in-memory path, never on a file swapped in mid-run, and a worker that dies is one line."""
import os
import signal

import h5py
import numpy as np
import pytest

import main as program
from dataset.layout import FEATURE_KEY, VISUAL_FILE
from dataset.stream import FeatureReader
from tests.helpers import TINY_FLAGS, user_error
from engine.checkpoint import LAST, load_checkpoint


def streamed(data, run, workers):
    return ['--data_root', data, '--snapshot_pref', run, '--n_epoch', 3, '--batch_size', 4,
            '--data_in_memory', 'false', '--num_workers', workers, '--prefetch', 1,
            '--num_threads', 1, '--no_progress', *TINY_FLAGS]


def after_epoch(monkeypatch, epoch, action):
    """Run `action()` as soon as epoch `epoch` is logged (its checkpoints follow at once)."""
    real = program.log_epoch

    def log_epoch(writer, log, record, weight_dict):
        real(writer, log, record, weight_dict)
        if record['epoch'] == epoch:
            action()

    monkeypatch.setattr(program, 'log_epoch', log_epoch)


def replace(path):
    """Put another file with other values at `path` (a link into the shared micro set)."""
    values = h5py.File(path.resolve(), 'r')[FEATURE_KEY][()]
    path.unlink()
    with h5py.File(path, 'w') as f:
        f[FEATURE_KEY] = values + 1


def touch(path):
    """Rewrite `path` in place: the same file, a newer modification time."""
    path = path.resolve()
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))


@pytest.mark.parametrize('workers, change', [(0, replace), (2, replace), (0, touch)],
                         ids=['in-process replaced', 'workers replaced', 'in-process touched'])
def test_a_feature_file_changed_mid_run_stops_it_with_one_line(workers, change, data, tmp_path,
                                                               monkeypatch, capsys):
    visual, run = data / VISUAL_FILE, tmp_path / 'run'
    if change is touch:   # the shared micro set's file: touch a private copy
        copy = visual.read_bytes()
        visual.unlink()
        visual.write_bytes(copy)
    after_epoch(monkeypatch, 1, lambda: change(visual))
    line = user_error(capsys, 'supervised', streamed(data, run, workers))
    assert line == (f'error: {visual} was replaced, changed or removed while this run was '
                    'reading it; the run stopped rather than train on other data (put the '
                    f'original file back to continue); the finished epochs are in {run / LAST}; '
                    f'continue with --resume {run / LAST}')
    assert load_checkpoint(run / LAST)['epoch'] == 1


def test_the_reader_knows_its_files_by_inode_size_and_time(data):
    reader = FeatureReader({'visual': data / VISUAL_FILE}, np.arange(4), np.float32)
    reader.check_files()                      # the same file: nothing to say
    touch(data / VISUAL_FILE)
    with pytest.raises(Exception, match='was replaced, changed or removed'):
        reader.check_files()


def test_a_data_worker_killed_mid_epoch_is_one_line(data, tmp_path, monkeypatch, capsys):
    """The worker kills itself (as the OOM killer would) on its first read of epoch 2."""
    marker, parent = tmp_path / 'epoch1_done', os.getpid()
    after_epoch(monkeypatch, 1, marker.touch)
    real = FeatureReader.read

    def read(self, rows):
        if os.getpid() != parent and marker.exists():
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, rows)

    monkeypatch.setattr(FeatureReader, 'read', read)
    run = tmp_path / 'run'
    line = user_error(capsys, 'supervised', streamed(data, run, 1))
    assert line == ('error: a data worker process died (signal 9, SIGKILL); the finished epochs '
                    f'are in {run / LAST}; continue with --resume {run / LAST}')
    assert load_checkpoint(run / LAST)['epoch'] == 1
