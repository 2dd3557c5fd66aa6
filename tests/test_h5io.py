"""dataset.h5io writes a file completely under its final name, or leaves the old one."""
import h5py
import numpy as np
import pytest

from dataset.h5io import write_h5, write_h5_chunked


def read(path, key='x'):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def test_write_h5_keeps_shape_and_dtype_and_replaces(tmp_path):
    path = tmp_path / 'a.h5'
    write_h5(path, 'x', np.zeros((2, 3), dtype=np.float32))
    write_h5(path, 'x', np.arange(4, dtype=np.int64))
    got = read(path)
    assert got.dtype == np.int64 and got.tolist() == [0, 1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ['a.h5']


def test_chunked_writes_blocks_in_order_cast_to_dtype(tmp_path):
    path = tmp_path / 'a.h5'
    blocks = (np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([3, 3, 1]))
    write_h5_chunked(path, 'x', (7, 2), np.float64, blocks)
    got = read(path)
    assert got.dtype == np.float64
    assert got[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 2]


@pytest.mark.parametrize('sizes, message', [([3, 3], 'gave 6 rows, expected 7'),
                                            ([4, 4], 'does not fit')])
def test_chunked_wrong_row_count_raises_and_keeps_old_file(tmp_path, sizes, message):
    path = tmp_path / 'a.h5'
    write_h5(path, 'x', np.ones(1))
    blocks = (np.zeros((n, 2)) for n in sizes)
    with pytest.raises(ValueError, match=message):
        write_h5_chunked(path, 'x', (7, 2), np.float32, blocks)
    assert read(path).tolist() == [1.0]
    assert [p.name for p in tmp_path.iterdir()] == ['a.h5']


def test_interrupted_write_leaves_nothing(tmp_path):
    def blocks():
        yield np.zeros((1, 2))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_h5_chunked(tmp_path / 'a.h5', 'x', (2, 2), np.float32, blocks())
    assert list(tmp_path.iterdir()) == []
