"""Fixtures shared by the tests: tiny synthetic AVE sets and the real annotation files."""
from pathlib import Path

import pytest
import torch

from dataset.synthetic import generate

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


@pytest.fixture(scope='module', autouse=True)
def torch_threads():
    """Runs set torch's thread count (--num_threads); each test module starts with the
    count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
