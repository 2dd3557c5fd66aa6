"""dataset.ave: the AVE layout is read exactly, and every bad folder is one clear error."""
import shutil
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

import dataset.ave as ave
from dataset.ave import DataError, load_ave


@pytest.fixture
def folder(tiny_ave, tmp_path):
    """A private copy of the tiny synthetic set that a test may break."""
    dest = tmp_path / 'data'
    shutil.copytree(tiny_ave, dest)
    return dest


def rewrite(path, key='avadataset', value=None, **kwargs):
    """Replace the file with one dataset `key` holding `value`."""
    path.unlink()
    with h5py.File(path, 'w') as f:
        f.create_dataset(key, data=value, **kwargs)


def read(path, key='avadataset'):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def test_loads_splits_as_float32_tensors_in_order_file_order(tiny_ave):
    data = load_ave(tiny_ave, progress=False)
    audio, visual, labels = (read(tiny_ave / f) for f in
                             ('audio_feature.h5', 'visual_feature.h5', 'labels.h5'))
    for split in ('train', 'val', 'test'):
        order = read(tiny_ave / f'{split}_order.h5', 'order')
        rows = data.splits[split]
        assert data.source_rows[rows.numpy()].tolist() == order.tolist()
        a, v = data.inputs(rows)
        t = data.targets(rows)
        assert a.dtype == v.dtype == torch.float32
        assert a.shape == (len(order), 10, 128) and v.shape == (len(order), 10, 7, 7, 512)
        np.testing.assert_array_equal(a.numpy(), audio[order].astype(np.float32))
        np.testing.assert_array_equal(v.numpy(), visual[order].astype(np.float32))
        np.testing.assert_array_equal(t['segment'].numpy(), labels[order].argmax(-1))


def test_video_class_is_the_event_class_or_none(tiny_ave):
    data = load_ave(tiny_ave, splits=('train',), progress=False)
    seg, cls = data.segment, data.video_class
    for s, c in zip(seg.tolist(), cls.tolist()):
        events = {x for x in s if x != 28}
        assert (events == {c}) if events else c == -1


def test_only_requested_splits_are_loaded(tiny_ave):
    data = load_ave(tiny_ave, splits=('test',), progress=False)
    assert set(data.splits) == {'test'}
    assert len(data.audio) == len(read(tiny_ave / 'test_order.h5', 'order'))


def test_plural_audio_file_name_is_accepted(folder):
    (folder / 'audio_feature.h5').rename(folder / 'audio_features.h5')
    assert len(load_ave(folder, splits=('val',), progress=False).splits['val']) > 0


def test_float64_files_load_in_chunks_as_float32(folder, monkeypatch):
    visual = read(folder / 'visual_feature.h5').astype(np.float64)
    rewrite(folder / 'visual_feature.h5', value=visual)
    monkeypatch.setattr(ave, 'CHUNK_VIDEOS', 4)
    tracemalloc.start()
    data = load_ave(folder, splits=('train',), progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert data.visual.dtype == torch.float32
    order = read(folder / 'train_order.h5', 'order')
    np.testing.assert_array_equal(data.inputs(data.splits['train'])[1].numpy(),
                                  visual[order].astype(np.float32))
    # numpy/h5py never held more than a few chunks, far from the whole float64 array.
    assert peak < visual.nbytes / 4, (peak, visual.nbytes)


def test_float16_storage_halves_memory_and_batches_are_float32(tiny_ave):
    data = load_ave(tiny_ave, splits=('val',), feature_dtype=torch.float16, progress=False)
    assert data.visual.dtype == torch.float16
    assert data.inputs(data.splits['val'])[1].dtype == torch.float32


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match=r'data folder .*nowhere does not exist; pass --data_root'):
        load_ave(tmp_path / 'nowhere')


@pytest.mark.parametrize('name', ['audio_feature.h5', 'visual_feature.h5', 'labels.h5',
                                  'train_order.h5', 'val_order.h5', 'test_order.h5'])
def test_each_missing_file_names_file_folder_and_source(folder, name):
    (folder / name).unlink()
    with pytest.raises(DataError) as e:
        load_ave(folder, progress=False)
    msg = str(e.value)
    assert name.split('.')[0] in msg and str(folder.resolve()) in msg
    feature = 'feature' in name
    # Where the file comes from, and only that: features from the release or the generator,
    # labels and order files also from the annotations.
    assert ('Google Drive' in msg and 'dataset.synthetic' in msg) is feature
    assert ('dataset.labels' in msg) is not feature


def test_every_missing_file_is_reported_at_once(folder):
    for name in ('visual_feature.h5', 'val_order.h5', 'mil_labels.h5'):
        (folder / name).unlink()
    with pytest.raises(DataError) as e:
        load_ave(folder, setting='weak', progress=False)
    assert str(e.value).startswith('visual_feature.h5, val_order.h5, mil_labels.h5 not found in '
                                   f'data folder {folder.resolve()}; features come from')
    assert 'dataset.labels' in str(e.value) and '--no_background' not in str(e.value)


def test_wrong_key_lists_the_keys_present(folder):
    rewrite(folder / 'labels.h5', key='labels', value=read(folder / 'labels.h5'))
    with pytest.raises(DataError, match=r"labels.h5 has no key 'avadataset' \(it has: labels\)"):
        load_ave(folder, progress=False)


def test_corrupt_file(folder):
    (folder / 'audio_feature.h5').write_bytes(b'not an hdf5 file at all')
    with pytest.raises(DataError, match='audio_feature.h5 is not a readable HDF5 file'):
        load_ave(folder, progress=False)


def test_truncated_file(folder):
    path = folder / 'visual_feature.h5'
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match='visual_feature.h5.*(not a readable HDF5|truncated)'):
        load_ave(folder, progress=False)


def test_video_counts_that_disagree(folder):
    rewrite(folder / 'audio_feature.h5', value=read(folder / 'audio_feature.h5')[:-1])
    with pytest.raises(DataError, match='files disagree on the number of videos'):
        load_ave(folder, progress=False)


def test_other_feature_sizes_are_read_from_the_files(folder):
    rewrite(folder / 'audio_feature.h5', value=read(folder / 'audio_feature.h5')[:, :, :64])
    data = load_ave(folder, progress=False)
    assert data.spec.audio_dim == 64


def test_audio_and_visual_must_have_the_same_segments(folder):
    rewrite(folder / 'visual_feature.h5', value=read(folder / 'visual_feature.h5')[:, :9])
    with pytest.raises(DataError, match=r'audio_feature.h5 has 10 segments per video but '
                                        r'.*visual_feature.h5 has 9'):
        load_ave(folder, progress=False)


def test_labels_not_one_hot(folder):
    labels = read(folder / 'labels.h5')
    labels[3, 4, :] = 0
    labels[3, 4, [1, 28]] = 1
    rewrite(folder / 'labels.h5', value=labels)
    with pytest.raises(DataError, match=r'labels.h5 is not one-hot at video row \d+, segment 4'):
        load_ave(folder, progress=False)


def test_order_out_of_range(folder):
    order = read(folder / 'val_order.h5', 'order')
    order[0] = 10_000
    rewrite(folder / 'val_order.h5', 'order', order)
    with pytest.raises(DataError, match='val_order.h5 has index 10000 out of range'):
        load_ave(folder, progress=False)


def test_orders_overlapping(folder):
    val = read(folder / 'val_order.h5', 'order')
    test = read(folder / 'test_order.h5', 'order')
    rewrite(folder / 'test_order.h5', 'order', np.concatenate([test, val[:1]]))
    with pytest.raises(DataError, match='val_order.h5 and test_order.h5 share 1 rows'):
        load_ave(folder, progress=False)


def test_order_with_repeated_row(folder):
    order = read(folder / 'train_order.h5', 'order')
    rewrite(folder / 'train_order.h5', 'order', np.concatenate([order, order[:1]]))
    with pytest.raises(DataError, match='train_order.h5 lists row .* more than once'):
        load_ave(folder, progress=False)


def test_nan_features_name_file_and_video(folder):
    visual = read(folder / 'visual_feature.h5')
    row = int(read(folder / 'test_order.h5', 'order')[0])
    visual[row, 3, 1, 1, 7] = np.nan
    rewrite(folder / 'visual_feature.h5', value=visual)
    with pytest.raises(DataError, match=f'visual_feature.h5 has NaN or Inf values in video {row}'):
        load_ave(folder, progress=False)


def test_integer_features_are_refused(folder):
    rewrite(folder / 'audio_feature.h5', value=read(folder / 'audio_feature.h5').astype(np.int32))
    with pytest.raises(DataError, match='audio_feature.h5 holds int32 values'):
        load_ave(folder, progress=False)
