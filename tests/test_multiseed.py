"""tools/multiseed.py and multiseed.sh: one run per seed, and a mean +- std table."""
import json

import pytest

from tests.helpers import SMALL_FLAGS, run_script
from tools.multiseed import main as multiseed
from tools.multiseed import summarize, table, table_markdown


def test_summary_is_mean_and_sample_std():
    assert summarize([70.0, 72.0, 74.0]) == {'mean': 72.0, 'std': 2.0, 'n': 3}
    assert summarize([70.0]) == {'mean': 70.0, 'std': None, 'n': 1}   # one seed: no spread
    assert summarize([None]) == {'mean': None, 'std': None, 'n': 0}
    runs = [{'seed': s, 'best_epoch': 5, 'val_accuracy': v, 'test_accuracy': t, 'run': f'r/{s}'}
            for s, v, t in ((1, 71.0, 70.0), (2, 73.0, 72.0), (3, 75.0, 74.0))]
    text = table_markdown(table('weak', 'dmin', 'val', runs))
    assert text.startswith('# weak DMIN over 3 seeds')
    assert '| 2 | 5 | 73.000 | 72.000 | r/2 |' in text
    assert '| **mean ± std** (n=3) | | **73.00 ± 2.00** | **72.00 ± 2.00** | |' in text


@pytest.fixture(scope='module')
def seeds_run(micro_ave, tmp_path_factory):
    pref = tmp_path_factory.mktemp('seeds') / 'supervised'
    flags = ['--data_root', micro_ave, '--n_epoch', '1', '--batch_size', '16', '--no_progress',
             '--tb_images_every', '0', *SMALL_FLAGS]
    proc = run_script('multiseed.sh', '--setting', 'supervised', '--seeds', 3, 4,
                      '--snapshot_pref', pref, *flags)
    return pref, flags, proc


def test_table_has_a_row_per_seed_and_their_mean_and_std(seeds_run):
    pref, _, proc = seeds_run
    doc = json.loads((pref / 'seeds.json').read_text())
    assert [r['seed'] for r in doc['runs']] == [3, 4]
    for r in doc['runs']:
        metrics = json.loads((pref / f"seed_{r['seed']}" / 'metrics.json').read_text())
        assert (r['best_epoch'], r['val_accuracy'], r['test_accuracy']) == \
            (metrics['best_epoch'], metrics['val_accuracy'], metrics['test_accuracy'])
        assert metrics['history'][0]['train']  # a real training run of its own
    tests = [r['test_accuracy'] for r in doc['runs']]
    assert doc['test_accuracy'] == summarize(tests) and doc['test_accuracy']['n'] == 2
    assert doc['val_accuracy'] == summarize([r['val_accuracy'] for r in doc['runs']])
    table = (pref / 'seeds.md').read_text()
    assert '| 3 | 1 |' in table and '| 4 | 1 |' in table
    mean_std = f"{doc['test_accuracy']['mean']:.2f} ± {doc['test_accuracy']['std']:.2f}"
    assert '| **mean ± std** (n=2) |' in table and mean_std in table
    assert mean_std in proc.stdout


def test_existing_seed_folders_are_refused_before_training(seeds_run, capsys):
    pref, flags, _ = seeds_run
    with pytest.raises(SystemExit) as stop:
        multiseed(['--setting', 'supervised', '--seeds', '4', '5', '--snapshot_pref', str(pref),
                   *map(str, flags)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count('\n') == 1
    assert 'seed_4' in err and '--overwrite' in err and '--continue' in err
    assert not (pref / 'seed_5').exists()


def test_continue_reads_the_finished_seeds_back_and_trains_the_missing_one(seeds_run):
    pref, flags, _ = seeds_run
    before = json.loads((pref / 'seeds.json').read_text())
    mtimes = {s: (pref / f'seed_{s}' / 'last.pth.tar').stat().st_mtime_ns for s in (3, 4)}
    doc = multiseed(['--setting', 'supervised', '--seeds', '3', '4', '5', '--continue',
                     '--snapshot_pref', str(pref), *map(str, flags)])
    assert {s: (pref / f'seed_{s}' / 'last.pth.tar').stat().st_mtime_ns for s in (3, 4)} == mtimes
    assert doc['runs'][:2] == before['runs'] and doc['runs'][2]['seed'] == 5
    assert json.loads((pref / 'seed_5' / 'metrics.json').read_text())['epochs_done'] == 1


@pytest.mark.parametrize('argv, words', [
    (['--seeds', '1', '--seed', '2'], ['--seed cannot be passed']),
    (['--seeds', '1', '1'], ['repeats a seed']),
    (['--seeds', '1', '--lr', '-1'], ['--lr']),
    (['--seeds', '1', '--overwrite', '--continue'], ['--overwrite', '--continue']),
])
def test_bad_command_lines_are_one_line_errors(argv, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        multiseed(['--setting', 'weak', '--snapshot_pref', str(tmp_path / 'x'), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and err.count('\n') == 1
    assert all(w in err for w in words)
    assert not (tmp_path / 'x').exists()
