"""Fixtures shared by the tests: tiny synthetic AVE sets, the real annotation files,
generated videos and their features."""
import signal
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from dataset.synthetic import generate
from engine.memory import reuse_freed_memory

# Real small AVE files (third-party): next to the checkout, never copied into it.
META_DIR = Path(__file__).resolve().parents[2] / 'shared' / 'ave_meta'


@pytest.fixture(scope='session')
def tiny_ave(tmp_path_factory):
    """Folder of a tiny float32 synthetic AVE set: 64 videos, 8 background, seed 0 (made once)."""
    out = tmp_path_factory.mktemp('tiny_ave')
    generate(out, videos=64, background=8, seed=0, progress=False)
    return out


@pytest.fixture(scope='session')
def meta_dir():
    """Folder of the real AVE annotation/label files; skips the test when it is absent."""
    if not META_DIR.is_dir():
        pytest.skip(f'real AVE files not found at {META_DIR}')
    return META_DIR


@pytest.fixture(scope='session')
def micro_ave(tmp_path_factory):
    """Folder of a 16-video synthetic AVE set (12/2/2, 2 background, seed 1): for tests that
    need some trained checkpoint, not a good one; an epoch on it takes seconds."""
    out = tmp_path_factory.mktemp('micro_ave')
    generate(out, videos=16, background=2, seed=1, progress=False)
    return out


@pytest.fixture
def data(micro_ave, tmp_path):
    """A private data folder: links to the micro set's files, any of which a test replaces
    (by unlinking it first: never write through a link)."""
    folder = tmp_path / 'data'
    folder.mkdir()
    for src in micro_ave.iterdir():
        (folder / src.name).symlink_to(src)
    return folder


@pytest.fixture(scope='session', autouse=True)
def ctrl_c_delivered():
    """Ctrl-C reaches the tests' programs as it does from a terminal. A shell that starts the
    tests in the background (`pytest ... &`) hands them SIGINT ignored, which Python keeps
    and every process they start inherits; a handler set here is reset to the default in
    those processes when they start."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope='session', autouse=True)
def freed_memory_kept():
    """The tests that train in this process keep freed memory for reuse, as the programs do
    by default (engine/memory.py): without it, each step maps its large blocks afresh, and a
    tiny test epoch takes several times as long."""
    reuse_freed_memory()


@pytest.fixture(scope='module', autouse=True)
def torch_threads():
    """Runs set torch's thread count (--num_threads); each test module starts with the
    count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def video_folder(tmp_path_factory):
    """Generated videos (the repository ships none), each a case extraction must handle:
    - shift.mkv: 10 s, lossless; the picture changes at second 3, a 1 kHz tone starts at 5;
    - long.mp4: 25 s, MPEG-4 + AAC, a slide show: another picture every 2.5 s (three 10 s
      windows, the last padded);
    - short.mkv: 0.5 s (refused: shorter than one second);
    - silent.mkv: no audio stream; soundonly.mkv: no video stream; notavideo.mp4: text;
      truncated.mp4: long.mp4's first third (corrupt: its index, at the end, is gone)."""
    from features.make_video import write_video
    folder = tmp_path_factory.mktemp('videos')
    write_video(folder / 'shift.mkv', 10, colors=((200, 40, 40), (40, 200, 40)),
                color_changes=(3,), tone_from=5)
    write_video(folder / 'long.mp4', 25, fps=Fraction(2, 5), kind='mp4',
                colors=[(25 * k, 100, 250 - 25 * k) for k in range(10)],
                color_changes=[2.5 * k for k in range(1, 10)])
    write_video(folder / 'short.mkv', 0.5)
    write_video(folder / 'silent.mkv', 2, audio=False)
    write_video(folder / 'soundonly.mkv', 2, video=False)
    (folder / 'notavideo.mp4').write_text('not a video\n')
    whole = (folder / 'long.mp4').read_bytes()
    (folder / 'truncated.mp4').write_bytes(whole[:len(whole) // 3])
    return folder


# How the tests extract: random weights (no downloads), one frame per second.
EXTRACT_FLAGS = ['--weights', 'random', '--frames_per_segment', '1', '--device', 'cpu',
                 '--no_progress']


@pytest.fixture(scope='session')
def extracted(video_folder, tmp_path_factory):
    """(data folder, exit status, stderr lines) of extract_features on `video_folder`."""
    import contextlib
    import io

    from tools.extract_features import main
    out = tmp_path_factory.mktemp('extracted')
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(video_folder), '--out', str(out), *EXTRACT_FLAGS])
            status = 0
        except SystemExit as e:
            status = e.code
    return out, status, err.getvalue().splitlines()
