"""tools/compare.py and compare.sh: methods x settings x seeds in one table, resumable."""
import signal
import statistics
import subprocess
import sys

import pytest

from engine.checkpoint import LAST, load_checkpoint
from model import build_model, count_parameters
from tests.helpers import NO_IMAGES, REPO
from tools.compare import main as compare
from tools.multiseed import summarize

# AVEL and PSP share these keys: one command line narrows both.
NARROW = ['--lstm_hidden', '8', '--attention_hidden', '16', *NO_IMAGES]


def test_the_table_is_written_and_a_killed_comparison_continues(micro_ave, tmp_path):
    pref = tmp_path / 'cmp'
    argv = [str(a) for a in ('--data_root', micro_ave, '--models', 'avel', 'psp', '--settings',
                             'supervised', '--seeds', 1, 2, '--n_epoch', 2, '--no_progress',
                             *NARROW, '--snapshot_pref', pref)]
    # Killed (as by kill -9) right after the third last.pth.tar of the comparison: AVEL's
    # seed 1 has finished and seed 2 has done one of its two epochs.
    proc = subprocess.run([sys.executable, '-m', 'tests.die_at', 'compare', f'after:{LAST}', '3',
                           *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    avel = pref / 'avel_supervised'
    finished = (avel / 'seed_1' / LAST).stat().st_mtime_ns
    assert load_checkpoint(avel / 'seed_2' / LAST)['epoch'] == 1
    assert not (pref / 'compare.json').exists() and not (pref / 'psp_supervised').exists()

    doc = compare(argv)     # the same command again
    assert (avel / 'seed_1' / LAST).stat().st_mtime_ns == finished    # read back, not retrained
    assert 'resuming' in (avel / 'seed_2' / 'train.log').read_text()
    assert [(r['method'], r['setting'], r['seeds'], r['epochs']) for r in doc['rows']] == [
        ('AVEL', 'supervised', 2, [2, 2]), ('PSP', 'supervised', 2, [2, 2])]
    for row, model in zip(doc['rows'], ('avel', 'psp')):
        states = [load_checkpoint(pref / f'{model}_supervised' / f'seed_{s}' / LAST) for s in (1, 2)]
        assert row['test_accuracy'] == summarize([s['best']['test_accuracy'] for s in states])
        assert row['val_accuracy'] == summarize([s['best']['val_accuracy'] for s in states])
        assert row['best_on_test']['mean'] == pytest.approx(statistics.fmean(
            max(r['test_accuracy'] for r in s['history']) for s in states))
        assert row['parameters'] == count_parameters(build_model(states[0]['model_args']))
        videos = sum(r['train_videos'] for s in states for r in s['history'])
        seconds = sum(r['train_seconds'] for s in states for r in s['history'])
        assert row['train_videos_per_s'] == pytest.approx(videos / seconds)
    table = (pref / 'compare.md').read_text()
    assert '| AVEL | supervised |' in table and '| PSP | supervised |' in table
    assert 'release protocol' in table

    # Once more: everything is finished, nothing trains, the table is the same.
    mtimes = {p: p.stat().st_mtime_ns for p in pref.glob(f'*/seed_*/{LAST}')}
    assert compare(argv)['rows'] == doc['rows']
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


@pytest.mark.parametrize('flags, words', [
    (['--model', 'avel'], ['--model cannot be passed']),
    (['--select_on', 'test'], ['--select_on cannot be passed']),
    (['--models', 'avel', 'avel'], ['repeats']),
    (['--models', 'avel', 'dmin', '--lstm_hidden', '8'], ['--lstm_hidden']),   # not DMIN's
    (['--models', 'resnet'], ['--models', 'resnet']),
])
def test_bad_command_lines_are_one_line_errors_before_anything_trains(flags, words, tmp_path,
                                                                      micro_ave, capsys):
    with pytest.raises(SystemExit) as stop:
        compare(['--seeds', '1', '--data_root', str(micro_ave),
                 '--snapshot_pref', str(tmp_path / 'x'), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and err.count('\n') == 1, err
    assert all(w in err for w in words)
    assert not (tmp_path / 'x').exists()
