"""tools/predict.py and predict.sh: segment predictions, event intervals, CSV, plots, errors."""
import csv
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from dataset.ave import load_ave, load_videos
from tests.helpers import BACKGROUND, LABEL_NAMES, REPO, SMALL_FLAGS, best_checkpoint, run_script
from tests.test_plots import png_size
from tools.predict import main as predict
from engine.checkpoint import load_checkpoint, model_for
from reports.plots import SIZES
from main import main as train


@pytest.fixture(scope='module')
def checkpoints(micro_ave, tmp_path_factory):
    """{setting: best checkpoint} of a 1-epoch run of each setting on the micro set."""
    runs = tmp_path_factory.mktemp('predict_runs')
    found = {}
    for setting, task in (('supervised', 'Supervised'), ('weak', 'WeaklySupervised')):
        train(setting, ['--data_root', str(micro_ave), '--snapshot_pref', str(runs / setting),
                        '--n_epoch', '1', '--batch_size', '16', '--no_progress',
                        '--tb_images_every', '0', *SMALL_FLAGS])
        found[setting] = best_checkpoint(runs / setting, task)
    return found


@pytest.fixture(scope='module')
def predicted(checkpoints, tiny_ave, tmp_path_factory):
    """predict.py on the 52 training videos of tiny_ave, with CSV and plots."""
    out = tmp_path_factory.mktemp('predicted')
    doc = predict(['--checkpoint', str(checkpoints['supervised']), '--data_root', str(tiny_ave),
                   '--split', 'train', '--out', str(out / 'preds.json'), '--csv',
                   str(out / 'events.csv'), '--plot', str(out / 'plots'), '--plot_videos', '3',
                   '--device', 'cpu', '--no_progress'])
    return out, doc


def model_outputs(checkpoint, data, rows):
    """(preds, confidence, labels) of tensor `rows` of AVEData `data`, straight from the model."""
    model = model_for(load_checkpoint(checkpoint), checkpoint, data.spec)[0].eval()
    with torch.no_grad():
        outputs = model(*data.inputs(rows))
    return model.predict(outputs), model.confidence(outputs), data.targets(rows)['segment']


def split_outputs(checkpoint, data_root, split):
    data = load_ave(data_root, (split,), progress=False)
    return model_outputs(checkpoint, data, data.splits[split])


def segments_from_events(events, length=10):
    classes = [BACKGROUND] * length
    for e in events:
        assert 0 <= e['start_s'] < e['end_s'] <= length
        classes[e['start_s']:e['end_s']] = [e['class']] * (e['end_s'] - e['start_s'])
    return classes


def test_json_holds_the_models_segments_and_matching_intervals(predicted, checkpoints, tiny_ave):
    out, doc = predicted
    assert json.loads((out / 'preds.json').read_text()) == doc
    preds, confidence, labels = split_outputs(checkpoints['supervised'], tiny_ave, 'train')
    videos = doc['videos']
    assert doc['setting'] == 'supervised' and doc['num_videos'] == len(videos) == len(preds)
    assert [[s['class'] for s in v['segments']] for v in videos] == preds.tolist()
    assert [[s['label'] for s in v['segments']] for v in videos] == labels.tolist()
    got = torch.tensor([[s['confidence'] for s in v['segments']] for v in videos])
    assert torch.allclose(got, confidence, atol=1e-4)
    assert doc['accuracy'] == pytest.approx(100.0 * float((preds == labels).float().mean()))
    for v, p, c in zip(videos, preds.tolist(), confidence):
        # The events rebuild the segment predictions exactly, and never touch background.
        assert segments_from_events(v['events']) == p
        assert segments_from_events(v['true_events']) == [s['label'] for s in v['segments']]
        for e in v['events']:
            assert e['class_name'] == LABEL_NAMES[e['class']] and e['class'] != BACKGROUND
            assert e['score'] == pytest.approx(float(c[e['start_s']:e['end_s']].mean()), abs=1e-4)
        # consecutive events of one class would have been merged
        assert all(a['end_s'] < b['start_s'] or a['class'] != b['class']
                   for a, b in zip(v['events'], v['events'][1:]))


def test_csv_has_one_row_per_event(predicted):
    out, doc = predicted
    with open(out / 'events.csv') as f:
        rows = list(csv.DictReader(f))
    expected = [(v['row'], e['class'], e['start_s'], e['end_s']) for v in doc['videos']
                for e in v['events']]
    assert [(int(r['row']), int(r['class']), int(r['start_s']), int(r['end_s'])) for r in rows] \
        == expected


def test_plots_are_timelines_and_the_report(predicted):
    out, doc = predicted
    timelines = sorted((out / 'plots').glob('timeline_*.png'))
    assert [p.name for p in timelines] == [f"timeline_{i:04d}_row{v['row']}.png"
                                           for i, v in enumerate(doc['videos'][:3])]
    assert all(png_size(p) == SIZES['timeline'] for p in timelines)
    assert png_size(out / 'plots' / 'confusion_matrix.png') == SIZES['confusion']
    assert png_size(out / 'plots' / 'per_class_accuracy.png') == SIZES['per_class']
    rep = json.loads((out / 'plots' / 'report.json').read_text())
    assert rep['splits']['train']['accuracy'] == doc['accuracy']


def test_weak_checkpoint_through_predict_sh(checkpoints, micro_ave, tmp_path):
    proc = run_script('predict.sh', '--checkpoint', checkpoints['weak'], '--data_root', micro_ave,
                      '--out', tmp_path / 'weak.json', '--no_progress')
    doc = json.loads((tmp_path / 'weak.json').read_text())
    preds, _, _ = split_outputs(checkpoints['weak'], micro_ave, 'test')
    assert doc['setting'] == 'weak' and doc['input']['split'] == 'test'
    assert [[s['class'] for s in v['segments']] for v in doc['videos']] == preds.tolist()
    assert 'segment accuracy' in proc.stdout


def test_new_videos_from_h5_files_with_annotations(checkpoints, tiny_ave, tmp_path):
    rows = [5, 0, 9]
    files = {}
    for name, source in (('audio', 'audio_feature.h5'), ('visual', 'visual_feature.h5')):
        with h5py.File(tiny_ave / source, 'r') as f:
            features = f['avadataset'][()][rows].astype(np.float64)   # any float dtype
        files[name] = tmp_path / f'{name}.h5'
        with h5py.File(files[name], 'w') as f:
            f['avadataset'] = features
    annotations = tmp_path / 'Annotations.txt'
    annotations.write_text(''.join(f'Bark&vid_{i}&good&2&6\n' for i in range(len(rows))))
    doc = predict(['--checkpoint', str(checkpoints['supervised']), '--audio', str(files['audio']),
                   '--visual', str(files['visual']), '--annotations', str(annotations),
                   '--out', str(tmp_path / 'new.json'), '--plot', str(tmp_path / 'plots'),
                   '--plot_videos', '1', '--no_progress'])
    data = load_ave(tiny_ave, progress=False)
    tensor_rows = torch.tensor([int(np.flatnonzero(data.source_rows == r)[0]) for r in rows])
    preds, _, _ = model_outputs(checkpoints['supervised'], data, tensor_rows)
    assert [[s['class'] for s in v['segments']] for v in doc['videos']] == preds.tolist()
    assert [v['row'] for v in doc['videos']] == [0, 1, 2]
    assert [v['video_id'] for v in doc['videos']] == ['vid_0', 'vid_1', 'vid_2']
    assert 'accuracy' not in doc and 'label' not in doc['videos'][0]['segments'][0]
    assert [p.name for p in (tmp_path / 'plots').iterdir()] == ['timeline_0000_vid_0.png']


def run_predict(*args):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'predict.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def one_line_error(returncode, stderr, *words):
    assert returncode == 2, stderr
    assert stderr.startswith('error: ') and stderr.strip().count('\n') == 0, stderr
    for word in words:
        assert word in stderr


def test_setting_mismatch_from_the_command_line(checkpoints, tiny_ave, tmp_path):
    proc = run_predict('--checkpoint', checkpoints['supervised'], '--setting', 'weak',
                       '--data_root', tiny_ave, '--out', tmp_path / 'x.json')
    one_line_error(proc.returncode, proc.stderr, 'saved by the supervised setting, not weak; '
                   'drop --setting')


def test_bad_inputs_are_one_line_errors(checkpoints, tiny_ave, tmp_path, capsys):
    bad = tmp_path / 'audio64.h5'
    with h5py.File(bad, 'w') as f:
        f['avadataset'] = np.zeros((2, 10, 64), np.float32)
    visual = tmp_path / 'visual.h5'
    with h5py.File(visual, 'w') as f:
        f['avadataset'] = np.zeros((2, 10, 7, 7, 512), np.float32)
    ckpt, missing = str(checkpoints['supervised']), str(tmp_path / 'none.h5')
    cases = [
        (['--checkpoint', missing, '--data_root', str(tiny_ave)], ['not found']),
        (['--checkpoint', ckpt, '--audio', missing, '--visual', missing], ['--audio', 'not found']),
        (['--checkpoint', ckpt, '--audio', str(bad), '--visual', str(bad)],
         ['(2, 10, 64)', '(N, T, H, W, V)']),
        (['--checkpoint', ckpt, '--audio', str(bad), '--visual', str(visual)],
         ['audio features of size 128', 'these data have 64']),
        (['--checkpoint', ckpt, '--audio', str(bad)], ['--visual']),
        (['--checkpoint', ckpt, '--data_root', str(tmp_path)], ['not found in data folder']),
        (['--checkpoint', ckpt, '--data_root', str(tiny_ave), '--annotations', str(bad)],
         ['--annotations']),
        (['--checkpoint', ckpt, '--data_root', str(tiny_ave), '--weights', 'random'],
         ['--weights goes with --video']),
        (['--checkpoint', ckpt, '--video', missing, '--annotations', str(bad)],
         ['--annotations goes with --data_root or --audio']),
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as stop:
            predict(argv + ['--out', str(tmp_path / 'x.json'), '--no_progress'])
        one_line_error(stop.value.code, capsys.readouterr().err, *words)
    assert not (tmp_path / 'x.json').exists()
    # No usable video: each one's line as it fails, then the error.
    with pytest.raises(SystemExit) as stop:
        predict(['--checkpoint', ckpt, '--video', missing, '--weights', 'random',
                 '--out', str(tmp_path / 'x.json'), '--no_progress'])
    assert stop.value.code == 2 and capsys.readouterr().err.splitlines() == [
        f'error: {missing}: no such file',
        'error: none of the 1 videos could be used (each said why above)']
    assert not (tmp_path / 'x.json').exists()


def test_events_of_video_files_over_their_whole_length(checkpoints, extracted, video_folder,
                                                       tmp_path, capsys):
    """--video with --features: the fixture's folder was extracted with the same flags, so it
    is used as it is; a 25 s video's three windows become one 25-second timeline."""
    from conftest import EXTRACT_FLAGS
    features, _, _ = extracted
    with pytest.raises(SystemExit) as stop:
        predict(['--checkpoint', str(checkpoints['supervised']), '--video', str(video_folder),
                 '--features', str(features), '--out', str(tmp_path / 'v.json'),
                 '--csv', str(tmp_path / 'v.csv'), '--plot', str(tmp_path / 'plots'),
                 *EXTRACT_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith('error: 5 of 7 videos failed')
    assert err[0] == ('warning: the features of these videos were extracted with random weights '
                      '(--weights random): they are for trying the pipeline; training or '
                      'predicting on them means nothing')
    doc = json.loads((tmp_path / 'v.json').read_text())
    long, shift = doc['videos']
    assert long['video'].endswith('long.mp4') and shift['video'].endswith('shift.mkv')
    assert (long['seconds'], long['rows'], len(long['segments'])) == (25, [0, 1, 2], 25)
    assert (shift['seconds'], shift['rows'], len(shift['segments'])) == (10, [3], 10)
    assert [s['start_s'] for s in long['segments']] == list(range(25))
    # The segments are the model's on the rows, window after window, cut at 25 s.
    data = load_videos(features / 'audio_feature.h5', features / 'visual_feature.h5',
                       progress=False)
    model = model_for(load_checkpoint(checkpoints['supervised']), 'ckpt', data.spec)[0].eval()
    with torch.no_grad():
        preds = model.predict(model(*data.inputs(torch.arange(4))))
    assert [s['class'] for s in long['segments']] == preds[:3].reshape(-1)[:25].tolist()
    assert [s['class'] for s in shift['segments']] == preds[3].tolist()
    events = long['events']
    assert events and events[0]['start_s'] >= 0 and events[-1]['end_s'] <= 25
    with open(tmp_path / 'v.csv') as f:
        assert sum(1 for row in csv.DictReader(f)) == len(events) + len(shift['events'])
    assert sorted(p.name for p in (tmp_path / 'plots').iterdir()) == [
        'timeline_0000_long.png', 'timeline_0001_shift.png']
    assert png_size(tmp_path / 'plots' / 'timeline_0000_long.png') == SIZES['timeline']


def test_a_video_is_extracted_and_predicted_in_one_go(checkpoints, tmp_path, capsys):
    from features.make_video import write_video
    write_video(tmp_path / 'clip.mkv', 3)
    doc = predict(['--checkpoint', str(checkpoints['weak']), '--video', str(tmp_path / 'clip.mkv'),
                   '--weights', 'random', '--frames_per_segment', '1', '--out',
                   str(tmp_path / 'clip.json'), '--no_progress'])
    (video,) = doc['videos']
    assert video['seconds'] == 3 and [s['end_s'] for s in video['segments']] == [1, 2, 3]
    assert json.loads((tmp_path / 'clip.json').read_text()) == doc
    out = capsys.readouterr()
    assert '1 videos, ' in out.out and 'random weights' in out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clip.json', 'clip.mkv']


def test_a_video_given_twice_gives_two_records(checkpoints, tmp_path):
    from features.make_video import write_video
    clip = str(write_video(tmp_path / 'clip.mkv', 2))
    doc = predict(['--checkpoint', str(checkpoints['supervised']), '--video', clip, clip,
                   '--weights', 'random', '--frames_per_segment', '1', '--out',
                   str(tmp_path / 'twice.json'), '--no_progress'])
    first, second = doc['videos']
    assert (first['index'], first['rows'], second['index'], second['rows']) == (0, [0], 1, [1])
    assert first['video'] == second['video'] and first['segments'] == second['segments']
    assert len(first['segments']) == 2
