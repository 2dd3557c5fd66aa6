"""The weakly-supervised setting: video labels + background videos, MIL loss, weak scripts."""
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from dataset.ave import DataError, load_ave
from model.heads import predict_segments
from tests.helpers import (SMALL_FLAGS, SMALL_MODEL, best_checkpoint, build,
                           printed_test_accuracy, run_script, user_error)
from engine.loop import train_one_epoch
from main import main


def read(path, key='avadataset'):
    with h5py.File(path, 'r') as f:
        return f[key][()]


def test_train_split_is_training_videos_plus_background_with_video_labels(tiny_ave):
    data = load_ave(tiny_ave, setting='weak', progress=False)
    order = read(tiny_ave / 'train_order.h5', 'order')
    n_bg = len(read(tiny_ave / 'labels_noisy.h5'))
    rows = data.splits['train']
    assert len(rows) == len(order) + n_bg
    assert data.source_rows[rows[:len(order)].numpy()].tolist() == order.tolist()
    assert torch.equal(rows[len(order):], data.background_rows)
    _, visual = data.inputs(rows)
    targets = data.targets(rows)
    mil = read(tiny_ave / 'mil_labels.h5')
    np.testing.assert_array_equal(targets['video_label'][:len(order)].numpy(), mil[order])
    assert (targets['video_label'][len(order):].argmax(-1) == 28).all()
    np.testing.assert_array_equal(visual[len(order):].numpy(), read(tiny_ave / 'visual_feature_noisy.h5'))
    assert (targets['segment'][len(order):] == 28).all()


def test_no_background_trains_on_training_videos_only(tiny_ave):
    data = load_ave(tiny_ave, setting='weak', background=False, progress=False)
    assert len(data.splits['train']) == len(read(tiny_ave / 'train_order.h5', 'order'))
    assert len(data.background_rows) == 0


def test_missing_background_file_names_the_flag(tiny_ave, tmp_path):
    folder = tmp_path / 'data'
    shutil.copytree(tiny_ave, folder)
    (folder / 'visual_feature_noisy.h5').unlink()
    with pytest.raises(DataError, match='visual_feature_noisy.h5 not found.*--no_background'):
        load_ave(folder, setting='weak', progress=False)
    load_ave(folder, setting='weak', background=False, progress=False)   # fine without them
    load_ave(folder, setting='weak', splits=('test',), progress=False)   # evaluation needs none


def test_every_video_and_every_background_video_enters_every_epoch_shuffled(tiny_ave, monkeypatch):
    cfg, model, criterion = build('weak', '--batch_size', '8', **SMALL_MODEL)
    data = load_ave(tiny_ave, setting='weak', progress=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    seen = []
    inputs = data.inputs
    monkeypatch.setattr(data, 'inputs', lambda rows: (seen.append(rows.tolist()), inputs(rows))[1])
    generator = torch.Generator().manual_seed(0)
    orders = []
    for epoch in (1, 2):
        seen.clear()
        train_one_epoch(model, criterion, data, optimizer, epoch, cfg, generator, progress=False)
        flat = [r for rows in seen for r in rows]
        assert sorted(flat) == sorted(data.splits['train'].tolist())      # each video once
        assert set(data.background_rows.tolist()) <= set(flat)
        assert len(seen) > 1 and any(set(rows) & set(data.background_rows.tolist())
                                     for rows in seen[:-1])                 # mixed, not appended
        orders.append(flat)
    assert orders[0] != orders[1]                                           # reshuffled


def test_weak_loss_reads_only_video_labels():
    _, _, criterion = build('weak')
    outputs = {'video_score': torch.softmax(torch.randn(2, 29), -1),
               'visual_video_score': torch.softmax(torch.randn(2, 29), -1)}
    label = torch.nn.functional.one_hot(torch.tensor([4, 28]), 29).float()
    a = criterion(outputs, {'video_label': label, 'segment': torch.zeros(2, 10, dtype=torch.long)})
    b = criterion(outputs, {'video_label': label, 'segment': torch.full((2, 10), 28)})
    assert a == b
    expected = torch.nn.MultiLabelSoftMarginLoss()(outputs['video_score'], label)
    torch.testing.assert_close(a['mil_fused'], expected)


def test_weak_prediction_can_choose_background_from_29_classes():
    relevance = torch.tensor([[1.0, 1.0, -1.0]])
    category = torch.zeros(1, 29)
    category[0, 28] = 5.0
    assert predict_segments(relevance, category, 28).tolist() == [[28, 28, 28]]
    category[0, 6] = 9.0
    assert predict_segments(relevance, category, 28).tolist() == [[6, 6, 28]]


@pytest.fixture(scope='module')
def weak_run(micro_ave, tmp_path_factory):
    run = tmp_path_factory.mktemp('weak') / 'run'
    proc = run_script('weak_train.sh', '--data_root', micro_ave, '--snapshot_pref', run,
                      '--n_epoch', 2, '--batch_size', 8, '--no_progress', *SMALL_FLAGS)
    return run, proc


def test_weak_scripts_train_and_reevaluate_to_the_same_accuracy(weak_run, micro_ave):
    run, proc = weak_run
    best = best_checkpoint(run, task='WeaklySupervised')
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['setting'] == 'weak' and best.name == metrics['best_checkpoint']
    assert f"{metrics['val_accuracy']:.3f}" in best.name
    test = run_script('weak_test.sh', '--data_root', micro_ave, '--resume', best, '--no_progress')
    assert printed_test_accuracy(test.stdout) == pytest.approx(metrics['test_accuracy'], abs=5e-4)


def test_weak_checkpoint_is_refused_by_the_supervised_program(weak_run, micro_ave, capsys):
    run, _ = weak_run
    line = user_error(capsys, 'supervised', ['--evaluate', '--resume', run / 'last.pth.tar',
                                             '--data_root', micro_ave])
    assert 'saved by the weak setting, not supervised; use weak_train.sh / weak_test.sh' in line


def test_no_background_flag_end_to_end(tiny_ave, tmp_path):
    folder = tmp_path / 'data'
    shutil.copytree(tiny_ave, folder)
    for name in ('audio_feature_noisy.h5', 'visual_feature_noisy.h5', 'labels_noisy.h5'):
        (folder / name).unlink()
    argv = ['--data_root', str(folder), '--snapshot_pref', str(tmp_path / 'run'), '--n_epoch', '1',
            '--batch_size', '8', '--no_progress', *SMALL_FLAGS]
    with pytest.raises(SystemExit) as e:
        main('weak', argv)
    assert e.value.code == 2
    main('weak', argv + ['--no_background'])
    train_videos = len(read(folder / 'train_order.h5', 'order'))
    assert f' {train_videos} train / ' in (tmp_path / 'run' / 'train.log').read_text()


def test_majority_baseline_ignores_background_videos(tiny_ave):
    from reports.report import majority_baseline
    data = load_ave(tiny_ave, setting='weak', progress=False)
    train = data.splits['train'][:-len(data.background_rows)]
    # Class 3 just outnumbers background among the training videos; counting the all-
    # background videos too would flip the majority to background.
    n3 = len(train) // 2 + 1
    data.segment[train[:n3]] = 3
    data.segment[train[n3:]] = 28
    assert n3 * 10 < (len(train) - n3 + len(data.background_rows)) * 10
    label, _ = majority_baseline(data)
    assert label == 3
