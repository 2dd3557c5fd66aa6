"""The shared loop through supv_main.py / supv_*.sh: training, checkpoints, logs, evaluation."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataset.ave import load_ave
from reports.metrics import accuracy
from main import main
from tests.helpers import (REPO, SMALL_FLAGS, SMALL_MODEL, best_checkpoint, build,
                           printed_test_accuracy, run_script, user_error)
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.loop import evaluate, train_one_epoch


def test_tiny_overfit_loss_falls_and_accuracy_rises(tiny_ave):
    torch.manual_seed(0)
    cfg, model, criterion = build('supervised', '--lr', '4e-3', '--batch_size', '8', **SMALL_MODEL)
    data = load_ave(tiny_ave, splits=('train',), progress=False)
    data.splits['train'] = data.splits['train'][:16]
    data.splits['fit'] = data.splits['train']
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    generator = torch.Generator().manual_seed(0)
    before = accuracy(data.segment[data.splits['fit']], evaluate(model, data, 'fit', cfg, progress=False))
    stats = [train_one_epoch(model, criterion, data, optimizer, e, cfg, generator, progress=False)
             for e in range(1, 16)]
    after = accuracy(data.segment[data.splits['fit']], evaluate(model, data, 'fit', cfg, progress=False))
    assert stats[-1]['loss'] < 0.5 * stats[0]['loss']
    assert after > before + 30 and after > 80


@pytest.fixture(scope='module')
def trained(micro_ave, tmp_path_factory):
    """One 2-epoch run through supv_train.sh, as the README shows it, started in the folder
    that holds its run folder (not the repository's)."""
    runs = tmp_path_factory.mktemp('runs')
    proc = run_script('supv_train.sh', '--data_root', micro_ave, '--snapshot_pref', 'supervised',
                      '--n_epoch', 2, '--batch_size', 8, '--no_progress', *SMALL_FLAGS,
                      '--tb_images_every', 10, cwd=runs)
    return runs / 'supervised', proc


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
    assert f"checkpoint: supervised/{best.name}" in proc.stdout   # as given: relative
    assert not list(run.glob('.*.tmp')), 'no temporary files are left behind'


def test_the_printed_tensorboard_command_works_where_the_user_is(trained):
    run, proc = trained
    here = run.parent                      # where the training was started
    program, logdir = re.search(r'TensorBoard: (\S+) --logdir (\S+)$', proc.stdout, re.M).groups()
    # The tensorboard of the Python that ran (the .venv's), not one that may not be on PATH.
    assert (here / program).resolve() == (Path(sys.executable).parent / 'tensorboard').resolve()
    assert logdir == 'supervised' and (here / logdir).resolve() == run.resolve()
    assert subprocess.run([program, '--version'], cwd=here, capture_output=True).returncode == 0


@pytest.mark.parametrize('script', ['supv_test.sh', 'predict.sh'])
def test_help_names_the_script_the_user_ran_and_ends_with_an_example(script):
    lines = run_script(script, '--help').stdout.strip().splitlines()
    assert lines[0].startswith(f'usage: {script} ')
    assert lines[-1].startswith(f'example: bash {script} --')


def test_demo_help_says_what_it_does_and_does_nothing():
    proc = run_script('demo.sh', '--help')
    assert proc.stdout.startswith('usage: bash demo.sh [training flags...]')
    assert 'installing' not in proc.stdout and 'writing' not in proc.stdout


def test_a_script_without_the_packages_says_how_to_install_them(tmp_path):
    """A Python without torch (a fresh clone before any install): one line, no traceback."""
    bare = tmp_path / 'bare'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(bare)], check=True)
    for script in ('supv_train.sh', 'predict.sh', 'extract_features.sh'):
        proc = subprocess.run(['bash', str(REPO / script), '--help'], capture_output=True,
                              text=True, env={**os.environ, 'PYTHON': str(bare / 'bin' / 'python')})
        assert proc.returncode == 2 and proc.stdout == ''
        assert proc.stderr.count('\n') == 1 and proc.stderr.startswith(
            f"error: {bare / 'bin' / 'python'} lacks the packages this repository needs; install "
            f'them once with `python3 -m venv {REPO}/.venv && {REPO}/.venv/bin/pip install -r '
            f'{REPO}/requirements.txt`'), proc.stderr


def test_a_checkpoint_written_before_model_args_were_stored_still_loads(trained, micro_ave, tmp_path):
    run, _ = trained
    state = load_checkpoint(best_checkpoint(run))
    del state['model_args'], state['data']     # as the checkpoints of earlier versions were
    state['config']['compile'] = False         # with a key that no longer exists
    save_checkpoint(state, tmp_path / 'old.pth.tar')
    result = main('supervised', ['--data_root', str(micro_ave), '--resume',
                                 str(tmp_path / 'old.pth.tar'), '--evaluate', '--no_progress'])
    metrics = json.loads((run / 'metrics.json').read_text())
    assert result['test_accuracy'] == pytest.approx(metrics['test_accuracy'], abs=5e-4)


def test_tensorboard_has_losses_accuracies_and_lr(trained):
    run, _ = trained
    events = EventAccumulator(str(run / 'tensorboard'))
    events.Reload()
    tags = set(events.Tags()['scalars'])
    assert {'loss/total', 'loss/event_bce', 'loss/class_ce', 'loss/udl_ce', 'accuracy/train',
            'accuracy/val', 'accuracy/test', 'lr'} <= tags
    assert [e.step for e in events.Scalars('accuracy/val')] == [1, 2]


def test_test_script_reprints_the_recorded_test_accuracy(trained, micro_ave):
    run, _ = trained
    metrics = json.loads((run / 'metrics.json').read_text())
    proc = run_script('supv_test.sh', '--data_root', micro_ave, '--resume', best_checkpoint(run),
                      '--no_progress')
    assert printed_test_accuracy(proc.stdout) == pytest.approx(metrics['test_accuracy'], abs=5e-4)


def test_existing_run_folder_is_never_silently_reused(trained, micro_ave):
    run, _ = trained
    argv = ['--data_root', str(micro_ave), '--snapshot_pref', str(run), '--n_epoch', '1']
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


def test_run_folder_has_the_best_epochs_report(trained):
    run, _ = trained
    metrics = json.loads((run / 'metrics.json').read_text())
    report = json.loads((run / 'report.json').read_text())
    assert report['epoch'] == metrics['best_epoch'] and report['checkpoint'] == best_checkpoint(run).name
    for split in ('val', 'test'):   # the same numbers as the training loop's
        assert report['splits'][split]['accuracy'] == metrics[f'{split}_accuracy']
        assert sum(map(sum, report['splits'][split]['confusion'])) == report['splits'][split]['segments']
    text = (run / 'report.md').read_text()
    assert '## val split' in text and '## test split' in text and 'Event vs background' in text


def test_tensorboard_has_per_class_and_confusion_images(trained):
    run, _ = trained
    events = EventAccumulator(str(run / 'tensorboard'), size_guidance={'images': 0})
    events.Reload()
    tags = set(events.Tags()['images'])
    assert {f'{kind}/{split}' for kind in ('per_class_accuracy', 'confusion_matrix')
            for split in ('val', 'test')} <= tags
    # tb_images_every (default 10) is past this 2-epoch run's end: images of the last epoch
    assert [e.step for e in events.Images('confusion_matrix/val')] == [2]


def test_evaluate_report_writes_the_test_report(trained, micro_ave, tmp_path, capsys):
    run, _ = trained
    metrics = json.loads((run / 'metrics.json').read_text())
    proc = run_script('supv_test.sh', '--data_root', micro_ave, '--resume', best_checkpoint(run),
                      '--no_progress', '--report', tmp_path / 'report')
    report = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert report['splits']['test']['accuracy'] == pytest.approx(metrics['test_accuracy'], abs=1e-9)
    assert printed_test_accuracy(proc.stdout) == pytest.approx(metrics['test_accuracy'], abs=5e-4)
    assert 'event vs background: precision' in proc.stdout
    assert {p.name for p in (tmp_path / 'report').iterdir()} == {
        'report.json', 'report.md', 'confusion_matrix.png', 'per_class_accuracy.png'}
    assert '--report goes with --evaluate' in user_error(capsys, 'supervised', [
        '--report', tmp_path / 'r2', '--data_root', micro_ave])
