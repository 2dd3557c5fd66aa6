"""The shared loop through supv_main.py / supv_*.sh: training, checkpoints, logs, evaluation."""
import json
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataset.ave import load_ave
from model import build_criterion, build_model
from tests.helpers import SMALL_FLAGS, SMALL_MODEL, best_checkpoint, printed_test_accuracy, run_script
from utils.checkpoint import load_checkpoint
from utils.config import parse_config
from utils.engine import evaluate, train_one_epoch
from utils.run import main


def test_tiny_overfit_loss_falls_and_accuracy_rises(tiny_ave):
    torch.manual_seed(0)
    cfg, _, _ = parse_config('supervised', ['--lr', '2e-3', '--batch_size', '8'])
    cfg.update(SMALL_MODEL)
    data = load_ave(tiny_ave, splits=('train',), progress=False)
    data.splits['train'] = data.splits['train'][:16]
    data.splits['fit'] = data.splits['train']
    model = build_model(cfg, 'supervised')
    criterion = build_criterion(cfg, 'supervised')
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    generator = torch.Generator().manual_seed(0)
    before, _ = evaluate(model, data, 'fit', cfg, progress=False)
    stats = [train_one_epoch(model, criterion, data, optimizer, e, cfg, generator, progress=False)
             for e in range(1, 31)]
    after, _ = evaluate(model, data, 'fit', cfg, progress=False)
    assert stats[-1]['loss'] < 0.5 * stats[0]['loss']
    assert after > before + 30 and after > 80


@pytest.fixture(scope='module')
def trained(tiny_ave, tmp_path_factory):
    """One 2-epoch run through supv_train.sh, as the README shows it."""
    run = tmp_path_factory.mktemp('runs') / 'supervised'
    proc = run_script('supv_train.sh', '--data_root', tiny_ave, '--snapshot_pref', run,
                      '--n_epoch', 2, '--batch_size', 8, '--no_progress', *SMALL_FLAGS)
    return run, proc


def test_train_script_writes_the_run_folder(trained):
    run, proc = trained
    best = best_checkpoint(run)
    m = re.fullmatch(r'model_epoch_(\d+)_top1_(\d+\.\d{3})_task_Supervised_best_model.pth.tar',
                     best.name)
    metrics = json.loads((run / 'metrics.json').read_text())
    assert int(m.group(1)) == metrics['best_epoch']
    assert float(m.group(2)) == pytest.approx(metrics['val_accuracy'], abs=5e-4)
    assert metrics['select_on'] == 'val' and metrics['epochs_done'] == 2
    assert metrics['test_accuracy'] == metrics['history'][metrics['best_epoch'] - 1]['test_accuracy']
    last = load_checkpoint(run / 'last.pth.tar')
    assert last['epoch'] == 2 and {'model', 'optimizer', 'scheduler', 'rng', 'config', 'best'} <= set(last)
    assert (run / 'config.yaml').is_file() and (run / 'train.log').is_file()
    assert (run / 'code' / 'supv_main.py').is_file() and (run / 'code' / 'model' / 'dima.py').is_file()
    assert 'tensorboard --logdir' in proc.stdout and str(best) in proc.stdout
    assert not list(run.glob('.*.tmp')), 'no temporary files are left behind'


def test_tensorboard_has_losses_accuracies_and_lr(trained):
    run, _ = trained
    events = EventAccumulator(str(run / 'tensorboard'))
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'loss/total', 'loss/event_bce', 'loss/class_ce', 'loss/udl_ce', 'accuracy/train',
            'accuracy/val', 'accuracy/test', 'lr'} <= tags
    assert [e.step for e in events.Scalars('accuracy/val')] == [1, 2]


def test_test_script_reprints_the_recorded_test_accuracy(trained, tiny_ave):
    run, _ = trained
    metrics = json.loads((run / 'metrics.json').read_text())
    proc = run_script('supv_test.sh', '--data_root', tiny_ave, '--resume', best_checkpoint(run),
                      '--no_progress')
    assert printed_test_accuracy(proc.stdout) == pytest.approx(metrics['test_accuracy'], abs=5e-4)


def test_existing_run_folder_is_never_silently_reused(trained, tiny_ave):
    run, _ = trained
    argv = ['--data_root', str(tiny_ave), '--snapshot_pref', str(run), '--n_epoch', '1']
    proc = run_script('supv_train.sh', *argv, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count('\n') == 0
    assert '--resume' in proc.stderr and '--overwrite' in proc.stderr


def test_select_on_test_and_overwrite(tiny_ave, tmp_path):
    run = tmp_path / 'run'
    argv = ['--data_root', str(tiny_ave), '--snapshot_pref', str(run), '--n_epoch', '2',
            '--batch_size', '8', '--no_progress', '--select_on', 'test', *SMALL_FLAGS]
    first = main('supervised', argv)
    history = first['history']
    assert first['best_epoch'] == max(history, key=lambda r: r['test_accuracy'])['epoch']
    (run / 'notes.txt').write_text('mine')
    second = main('supervised', argv + ['--overwrite', '--n_epoch', '1'])
    assert second['epochs_done'] == 1 and (run / 'notes.txt').read_text() == 'mine'
    assert len(list(run.glob('*_best_model.pth.tar'))) == 1


def test_resume_continues_to_the_same_result(tiny_ave, tmp_path):
    common = ['--data_root', str(tiny_ave), '--batch_size', '8', '--no_progress', *SMALL_FLAGS]
    straight = main('supervised', common + ['--snapshot_pref', str(tmp_path / 'a'), '--n_epoch', '3'])
    main('supervised', common + ['--snapshot_pref', str(tmp_path / 'b'), '--n_epoch', '1'])
    resumed = main('supervised', ['--resume', str(tmp_path / 'b' / 'last.pth.tar'), '--n_epoch', '3',
                                  '--no_progress'])
    untimed = lambda history: [{k: v for k, v in r.items() if 'seconds' not in k} for r in history]
    assert untimed(resumed['history']) == untimed(straight['history'])
    a = load_checkpoint(tmp_path / 'a' / 'last.pth.tar')['model']
    b = load_checkpoint(tmp_path / 'b' / 'last.pth.tar')['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
