"""core/: one line for every failure a user can meet, and Ctrl-C that always stops."""
import os
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

import main as program
from core.atomic import atomic_path
from core.errors import UserError
from tests.helpers import REPO, TINY_FLAGS, user_error


def test_a_ctrl_c_that_a_finalizer_swallows_still_stops_the_run(micro_ave, tmp_path, monkeypatch,
                                                                capsys):
    """Ctrl-C while the data load lands in a finalizer (h5py closing a file: Python prints
    'Exception ignored in ...' and goes on). The run stops before training, with one line."""
    real = program.load_ave

    class Finalizer:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)   # the handler raises inside __del__

    def load_ave(*args, **kwargs):
        data = real(*args, **kwargs)
        Finalizer()                              # collected at once
        return data

    monkeypatch.setattr(program, 'load_ave', load_ave)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        program.main('supervised', [str(a) for a in [
            '--data_root', micro_ave, '--snapshot_pref', tmp_path / 'run', '--n_epoch', 2,
            '--no_progress', *TINY_FLAGS]])
    assert stop.value.code == 130
    assert capsys.readouterr().err.splitlines() == ['interrupted: every file written so far is '
                                                    'intact']
    assert not (tmp_path / 'run').exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored


@pytest.fixture
def full_disk(tmp_path):
    """A path whose writes fail as on a full disk: a link to /dev/full."""
    if not os.path.exists('/dev/full'):
        pytest.skip('no /dev/full here')
    link = tmp_path / 'full.h5'
    link.symlink_to('/dev/full')
    return link


def test_hdf5_s_full_disk_message_becomes_one_line(full_disk, tmp_path):
    """HDF5's own message spans two lines and names buffers; the line names the file."""
    with pytest.raises(UserError) as e:
        with atomic_path(tmp_path / 'features.h5'), h5py.File(full_disk, 'w') as f:
            f.create_dataset('x', data=np.zeros(1000))
    message = str(e.value)
    assert '\n' not in message and message.startswith(f"could not write {tmp_path / 'features.h5'}"
                                                      ' (No space left on device: ')
    assert not list(tmp_path.glob('.features.h5.*'))


def can_drop_privileges():
    return os.geteuid() != 0 or shutil.which('setpriv') is not None


@pytest.mark.skipif(not can_drop_privileges(), reason='root without setpriv reads everything')
def test_an_unreadable_data_folder_is_one_line(micro_ave, tmp_path):
    """As a user without the right to read the folder (root runs without the capabilities
    that let it read anything)."""
    folder = tmp_path / 'data'
    shutil.copytree(micro_ave, folder)
    folder.chmod(0)
    drop = (['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--']
            if os.geteuid() == 0 else [])
    try:
        proc = subprocess.run(
            [*drop, sys.executable, str(REPO / 'supv_main.py'), '--data_root', str(folder),
             '--snapshot_pref', str(tmp_path / 'run'), '--no_progress', *TINY_FLAGS],
            capture_output=True, text=True, cwd=REPO)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f'error: data folder {folder}: permission denied on {folder}; give your user read '
        'access to the folder and its files (chmod u+rx on the folder), or pass another '
        '--data_root']


def test_a_permission_error_nothing_else_explains_is_one_line(micro_ave, tmp_path, monkeypatch,
                                                             capsys):
    """A file the program cannot open for a reason it did not foresee: still one line."""
    def refused(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', str(tmp_path / 'run' / 'config.yaml'))

    monkeypatch.setattr(program, 'dump_config', refused)
    line = user_error(capsys, 'supervised', ['--data_root', micro_ave, '--snapshot_pref',
                                             tmp_path / 'run', '--n_epoch', 1, '--no_progress',
                                             *TINY_FLAGS])
    assert line == (f"error: {tmp_path / 'run' / 'config.yaml'}: permission denied; give your "
                    'user access to it, or choose another path')


# A program whose SIGINT lands among the interpreter's exit handlers (a weakref finalizer
# that runs at exit raises it): as when a rank's Ctrl-C arrives during a collective and is
# handled only after the program has stopped.
SIGINT_AT_EXIT = """
import signal, sys, weakref
sys.path.insert(0, sys.argv[1])
class Obj: pass
keep = Obj()
weakref.finalize(keep, signal.raise_signal, signal.SIGINT)
from core.errors import exit_on_user_error
exit_on_user_error(lambda: 0)()
"""


def test_a_ctrl_c_during_exit_prints_nothing():
    proc = subprocess.run([sys.executable, '-c', SIGINT_AT_EXIT, str(REPO)], capture_output=True,
                          text=True)
    assert (proc.returncode, proc.stderr) == (0, '')
