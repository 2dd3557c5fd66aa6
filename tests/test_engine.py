"""engine/loop.py and the run's logging: the training step (clipping included), and the
TensorBoard events of a resumed run."""
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataset.layout import DataSpec
from engine.checkpoint import LAST, load_checkpoint
from engine.loop import float32_values, train_step
from main import main
from tests.helpers import SMALL_MODEL, TINY_FLAGS, build

SPEC = DataSpec(3, 4, 16, (2, 2, 8))


def batch():
    torch.manual_seed(0)
    targets = {'segment': torch.tensor([[0, 0, 3, 3], [3, 1, 1, 3]]),
               'video_class': torch.tensor([0, 1]),
               'video_label': torch.eye(4)[[0, 1]]}
    return torch.rand(2, 4, 16) * 10, torch.rand(2, 4, 2, 2, 8) * 10, targets


def gradient_norm(model):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()
                                                 if p.grad is not None])).item()


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_the_step_clips_the_gradient_norm_to_clip_gradient(setting):
    norms = {}
    for clip in (0.0, 0.05):
        torch.manual_seed(1)
        cfg, model, criterion = build(setting, spec=SPEC, **SMALL_MODEL)
        cfg = dict(cfg, clip_gradient=clip)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)   # the weights stay as they are
        outputs, terms, loss = train_step(model, criterion, optimizer, *batch(), cfg)
        assert set(terms) == set(criterion.weight_dict) and loss.item() == pytest.approx(
            sum(criterion.weight_dict[k] * v.item() for k, v in terms.items()), rel=1e-6)
        norms[clip] = gradient_norm(model)
    assert norms[0.0] > 0.05                                  # unclipped, it is larger
    assert norms[0.05] == pytest.approx(0.05, rel=1e-3)      # clipped to the setting


def test_float32_numbers_are_written_with_float32_s_decimals():
    values = torch.tensor([0.45487990975379944, 3.0, 1e-8], dtype=torch.float32)
    assert float32_values(values) == [0.4548799, 3.0, 1e-08]
    assert torch.equal(torch.tensor(float32_values(values), dtype=torch.float32), values)


def test_a_new_event_file_sorts_after_the_folder_s_last(tmp_path):
    """TensorBoard reads event files in name order. The folder's last file is stamped one
    second ahead (as a run opened within this second by a process whose id sorts after
    ours would be): the new writer's file must still come after it."""
    import socket
    import time
    from engine.logger import tensorboard_writer
    events = tmp_path / 'tensorboard'
    events.mkdir()
    last = f'events.out.tfevents.{int(time.time()) + 1:010d}.{socket.gethostname()}.99999999.9'
    (events / last).write_bytes(b'')
    writer = tensorboard_writer(tmp_path, purge_step=1)
    writer.add_scalar('x', 1.0, 1)
    writer.close()
    names = sorted(p.name for p in events.iterdir())
    assert len(names) == 2 and names[0] == last


def test_a_resumed_run_purges_the_events_of_the_epochs_it_repeats(micro_ave, tmp_path,
                                                                  monkeypatch):
    """A run killed after epoch 3's TensorBoard events but before its last.pth.tar (events
    are written first) resumes at epoch 3: its events of epoch 3 are not there twice. The
    writers' counter is set so that the last two files' names end in 9 and 10, which sort
    the wrong way round as text when both are opened in the same second."""
    from tensorboard.summary.writer import event_file_writer
    monkeypatch.setattr(event_file_writer, '_global_uid', event_file_writer.AtomicCounter(8))
    run = tmp_path / 'run'
    argv = ['--data_root', str(micro_ave), '--snapshot_pref', str(run), '--batch_size', '4',
            '--num_threads', '1', '--no_progress', *TINY_FLAGS]
    main('supervised', [*argv, '--n_epoch', '2'])
    shutil.copy(run / LAST, tmp_path / 'epoch2.pth.tar')
    main('supervised', ['--resume', str(run / LAST), '--data_root', str(micro_ave),
                        '--n_epoch', '3', '--no_progress'])
    shutil.copy(tmp_path / 'epoch2.pth.tar', run / LAST)       # as if killed before epoch 3's
    assert load_checkpoint(run / LAST)['epoch'] == 2
    main('supervised', ['--resume', str(run / LAST), '--data_root', str(micro_ave),
                        '--n_epoch', '4', '--no_progress'])
    events = EventAccumulator(str(run / 'tensorboard'))
    events.Reload()
    assert [e.step for e in events.Scalars('loss/total')] == [1, 2, 3, 4]
