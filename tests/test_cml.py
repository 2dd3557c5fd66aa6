"""Cross-modality localization (cml.py, model/matching.py, engine/matching.py,
dataset/matching.py): window scores, exact starts, both directions through the programs,
the leak check, resume, and the release's match splits."""
import json

import h5py
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cml import main as cml
from dataset.h5io import DataError
from dataset.labels import build_labels, event_segments, read_annotations
from dataset.layout import (ANNOTATIONS_FILE, CLOSS_FILE, DataSpec, FEATURE_KEY,
                            MATCH_ORDER_FILES, ORDER_FILES, ORDER_KEY, VISUAL_VEC_FILE)
from dataset.matching import MatchData, event_spans, load_match
from engine.checkpoint import LAST, load_checkpoint
from engine.config import parse_config
from engine.matching import accuracy, examples, localize
from model import count_parameters
from model.matching import (AVELMatcher, build_matcher, contrastive_loss, cross_match, distance,
                            matcher_args, window_scores, windows)
from reports.matching import localization_report
from tests.helpers import best_checkpoint, run_script, user_error
from tools.predict import main as predict

AVE_SPEC = DataSpec(None, 10, 128, (1, 1, 512))
SMALL_DMIN = ['--d_model', '16', '--n_heads', '2', '--ff_dim', '32', '--encoder_layers', '1',
              '--embed_dim', '8']
SMALL_DCMR = ['--protocol', 'dcmr', *SMALL_DMIN[:8]]


def cml_error(capsys, argv):
    """Run cml_main.py on `argv` in this process; return its one error line (status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cml([str(a) for a in argv], prog='cml_main.py')
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    return lines[0]


def train(data_root, folder, *flags, epochs=2):
    return cml(['--data_root', str(data_root), '--snapshot_pref', str(folder), '--n_epoch',
                str(epochs), '--no_progress', *map(str, flags)])


def identity_matcher(width):
    """An AVEL matcher whose embedding is the features themselves."""
    model = AVELMatcher(audio_dim=width, visual_dim=width, hidden=width, embed_dim=width,
                        slope=1.0)
    with torch.no_grad():
        for layer in [*model.audio[::2], *model.visual[::2]]:
            layer.weight.copy_(torch.eye(width))
            layer.bias.zero_()
    return model


def hand_data(audio, visual, event):
    """MatchData of every video in one 'test' split."""
    rows = torch.arange(len(audio))
    T, width = audio.shape[1:]
    return MatchData(audio=audio, visual=visual, event=event, splits={'test': rows},
                     file_rows={'test': rows.numpy()}, source_rows=rows.numpy(),
                     spec=DataSpec(None, T, width, (1, 1, width)), visual_source='hand')


def events(spans, T=10):
    event = torch.zeros(len(spans), T, dtype=torch.bool)
    for i, (start, length) in enumerate(spans):
        event[i, start:start + length] = True
    return event


# -- scores ------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['avel', 'dmin'])
def test_window_scores_equal_a_brute_force_recomputation(kind):
    """Each window embedded on its own (DMIN's encoder sees only that clip), its distance to
    the query summed over the segments."""
    torch.manual_seed(0)
    cfg = parse_config('cml', ['--model', kind, *SMALL_DMIN[:-2]] if kind == 'dmin' else [])[0]
    spec = DataSpec(None, 10, 6, (1, 1, 5))
    model = build_matcher(matcher_args(spec, cfg)).eval()
    query, other = torch.randn(3, 4, 5), torch.randn(3, 10, 6)   # V2A: visual query
    got = window_scores(model, query, windows(other, 4), 'visual', 'audio')
    assert got.shape == (3, 7)
    with torch.no_grad():
        for n in range(3):
            q = model.embed('visual', query[n:n + 1])
            for w in range(7):
                a = model.embed('audio', other[n:n + 1, w:w + 4])
                want = ((q - a) ** 2).sum(-1).sqrt().sum()
                torch.testing.assert_close(got[n, w], want, rtol=1e-5, atol=1e-5)


def test_windows_are_every_run_of_the_query_length():
    x = torch.arange(10.0).view(1, 10, 1)
    w = windows(x, 3)
    assert w.shape == (1, 8, 3, 1)
    assert [row.flatten().tolist() for row in w[0]][:2] == [[0, 1, 2], [1, 2, 3]]
    assert w[0, -1].flatten().tolist() == [7, 8, 9]


def test_contrastive_loss_by_hand():
    d = torch.tensor([0.5, 1.0, 3.0])
    same = torch.tensor([True, False, False])
    # 0.5^2, (2 - 1)^2, and a background pair beyond the margin costs nothing
    assert float(contrastive_loss(d, same, margin=2.0)) == pytest.approx((0.25 + 1.0 + 0) / 3)
    assert float(distance(torch.zeros(2), torch.zeros(2))) > 0   # finite gradient at 0


def test_cross_match_compounds_where_windows_overlap():
    """Segment p of the other sequence is scaled by the product of a[p - k] over the windows
    k covering it, a being the query's event segments averaged over the channels."""
    torch.manual_seed(1)
    query, other = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    event = events([(1, 3), (0, 0)], T=6)
    got = cross_match(query, other, event)
    a = query[0, 1:4].mean(-1)
    for p in range(6):
        scale = torch.tensor(1.0)
        for k in range(6 - 3 + 1):
            if k <= p < k + 3:
                scale = scale * a[p - k]
        torch.testing.assert_close(got[0, p], other[0, p] * scale)
    assert torch.equal(got[1], other[1])     # no event segments: left as it is


# -- exact starts ------------------------------------------------------------------------

@pytest.mark.parametrize('direction', ['a2v', 'v2a'])
def test_the_exact_start_is_found_and_one_segment_off_is_wrong(direction):
    """Features that name their segment (one-hot of t): aligned modalities put the query's
    window at distance 0, so each start is found; the other modality one segment late puts
    the best window one segment late, which scores 0 (no credit for overlap). The window
    always has the query's length (windows of other lengths are never scored)."""
    T = 10
    spans = [(0, 2), (3, 4), (5, 3), (2, 7)]
    one_hot = torch.eye(T).expand(len(spans), T, T).clone()
    data = hand_data(one_hot, one_hot.clone(), events(spans))
    model = identity_matcher(T)
    rows, predicted, start, length = localize(model, data, 'test', direction, batch_size=3)
    assert start.tolist() == [s for s, _ in spans] and length.tolist() == [l for _, l in spans]
    assert predicted.tolist() == start.tolist() and accuracy(predicted, start) == 100.0

    late = torch.roll(one_hot, 1, dims=1)        # segment t of the answer shows t - 1
    answer = 'visual' if direction == 'a2v' else 'audio'
    shifted = hand_data(one_hot, late, events(spans)) if answer == 'visual' else hand_data(
        late, one_hot, events(spans))
    _, predicted, start, _ = localize(model, shifted, 'test', direction, batch_size=3)
    assert predicted.tolist() == [s + 1 for s, _ in spans] and accuracy(predicted, start) == 0.0


def test_ties_go_to_the_first_window_and_the_references():
    """A matcher whose scores all tie answers the first window; the report's first_window
    reference is its accuracy, random_start the mean of 1 / (T - l + 1)."""
    spans = [(0, 2), (3, 4), (0, 9), (6, 2)]
    data = hand_data(torch.zeros(4, 10, 3), torch.zeros(4, 10, 3), events(spans))
    _, predicted, start, length = localize(identity_matcher(3), data, 'test', 'a2v', 8)
    assert predicted.tolist() == [0, 0, 0, 0]
    rep = localization_report(predicted, start, length, 10)
    assert rep['accuracy'] == rep['first_window'] == 50.0
    assert rep['random_start'] == pytest.approx(100 * (1 / 9 + 1 / 7 + 1 / 2 + 1 / 9) / 4)
    assert rep['by_length'] == {2: {'videos': 2, 'accuracy': 50.0},
                                4: {'videos': 1, 'accuracy': 0.0},
                                9: {'videos': 1, 'accuracy': 100.0}}


def test_only_partial_events_are_localized():
    """A video whose event is empty or the whole video has nothing to find."""
    spans = [(0, 10), (0, 0), (4, 3)]
    data = hand_data(torch.randn(3, 10, 3), torch.randn(3, 10, 3), events(spans))
    rows, _, start, length = localize(identity_matcher(3), data, 'test', 'v2a', 8)
    assert rows.tolist() == [2] and start.tolist() == [4] and length.tolist() == [3]
    start, length = event_spans(events(spans))
    assert start.tolist() == [0, 0, 4] and length.tolist() == [10, 0, 3]


def test_training_examples_cover_the_split(tiny_ave):
    """pairs: every segment of every training video once, aligned; clips: every training
    video once, in windows of one length per batch (at least 2 segments); videos: whole."""
    data = load_match(tiny_ave, progress=False)
    train = data.splits['train']
    g = torch.Generator().manual_seed(0)
    seen = []
    for audio, visual, event in examples(data, 'train', 'pairs', 16, g):
        assert audio.shape[1:] == (1, 128) and visual.shape[1:] == (1, 512)
        seen += [(a, v, e) for a, v, e in zip(audio[:, 0], visual[:, 0], event[:, 0])]
    assert len(seen) == len(train) * 10
    flat = data.audio[train].flatten(0, 1)
    torch.testing.assert_close(torch.stack([a for a, _, _ in seen]).sum(0), flat.sum(0))
    assert int(sum(e for *_, e in seen)) == int(data.event[train].sum())
    videos = 0
    for audio, visual, event in examples(data, 'train', 'clips', 8, g):
        assert 2 <= audio.shape[1] == visual.shape[1] == event.shape[1] <= 10
        videos += len(audio)
    assert videos == len(train)
    whole = list(examples(data, 'train', 'videos', 100, g))
    assert len(whole) == 1 and whole[0][0].shape == (len(train), 10, 128)


# -- the models --------------------------------------------------------------------------

def test_parameter_counts():
    """AVEL's matcher as its authors' Keras model (128 -> 128 -> 64, 512 -> 128 -> 64); DCMR
    as DMIN's release builds it (its used parameters); DMIN's matcher is ours."""
    counts = {}
    for flags in (['--model', 'avel'], ['--model', 'dmin'], ['--protocol', 'dcmr'],
                  ['--protocol', 'dcmr', '--direction', 'v2a']):
        cfg = parse_config('cml', flags)[0]
        counts[' '.join(flags)] = count_parameters(build_matcher(matcher_args(AVE_SPEC, cfg)))
    assert counts == {'--model avel': 98_688, '--model dmin': 5_457_536,
                      '--protocol dcmr': 8_219_393, '--protocol dcmr --direction v2a': 8_219_393}


def test_a_matcher_of_no_kind_is_refused():
    with pytest.raises(ValueError, match="no matcher 'x'"):
        build_matcher({'matcher': 'x'})


# -- the programs ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def avel_run(tiny_ave, tmp_path_factory):
    """A 2-epoch A2V run of AVEL's matcher on the tiny set."""
    folder = tmp_path_factory.mktemp('cml') / 'avel'
    return folder, train(tiny_ave, folder, '--model', 'avel', '--direction', 'a2v')


def test_a_run_selects_on_val_and_writes_what_a_run_writes(avel_run):
    folder, metrics = avel_run
    best = best_checkpoint(folder, 'A2V')
    state = load_checkpoint(best)
    assert state['setting'] == 'cml' and state['config']['direction'] == 'a2v'
    assert metrics['select_on'] == 'val' and metrics['epochs_done'] == 2
    vals = [h['val_accuracy'] for h in metrics['history']]
    assert metrics['val_accuracy'] == max(vals)
    assert best.name.startswith(f"model_epoch_{metrics['best_epoch']}_top1_")
    for name in ('metrics.json', 'report.json', 'report.md', 'config.yaml', 'train.log', LAST):
        assert (folder / name).is_file(), name
    report = json.loads((folder / 'report.json').read_text())
    assert report['splits']['test']['accuracy'] == pytest.approx(metrics['test_accuracy'])
    assert report['protocol'] == metrics['protocol'] == 'avel'
    assert 'AVEL protocol' in (folder / 'report.md').read_text().splitlines()[0]
    v2a = [h['directions']['v2a'] for h in metrics['history']]
    log = (folder / 'train.log').read_text()
    assert all(f"V2A: val {d['val']:.2f} | test {d['test']:.2f}" in log for d in v2a)
    events = EventAccumulator(str(folder / 'tensorboard'))
    events.Reload()
    for tag in ('a2v/val', 'a2v/test', 'v2a/val', 'v2a/test', 'loss/total'):
        assert [e.step for e in events.Scalars(tag)] == [1, 2], tag


def test_cml_test_sh_localizes_both_directions(avel_run, tiny_ave, tmp_path, capsys):
    """One matcher answers both directions: its own (in this process) and, through
    cml_test.sh, --direction v2a with a report of every video."""
    folder, metrics = avel_run
    best = best_checkpoint(folder, 'A2V')
    capsys.readouterr()
    a2v = cml(['--evaluate', '--resume', str(best), '--data_root', str(tiny_ave), '--no_progress'])
    assert a2v['test_accuracy'] == pytest.approx(metrics['test_accuracy'])
    assert f"A2V accuracy: {metrics['test_accuracy']:.3f}" in capsys.readouterr().out
    v2a = run_script('cml_test.sh', '--data_root', tiny_ave, '--resume', best, '--direction',
                     'v2a', '--report', tmp_path / 'rep').stdout
    report = json.loads((tmp_path / 'rep' / 'report.json').read_text())
    assert report['direction'] == 'v2a' and len(report['videos']) == 6
    assert f"V2A accuracy: {report['splits']['test']['accuracy']:.3f}" in v2a
    assert all(v['length'] >= 2 for v in report['videos'])


def test_a_resumed_run_equals_one_that_was_not_stopped(avel_run, tiny_ave, tmp_path):
    folder, _ = avel_run
    straight = tmp_path / 'straight'
    train(tiny_ave, straight, '--model', 'avel', '--direction', 'a2v', epochs=3)
    (tmp_path / 'resumed').mkdir()
    for f in folder.iterdir():
        if f.is_file():
            (tmp_path / 'resumed' / f.name).write_bytes(f.read_bytes())
    cml(['--resume', str(tmp_path / 'resumed' / LAST), '--data_root', str(tiny_ave),
         '--n_epoch', '3', '--no_progress'])
    a, b = load_checkpoint(straight / LAST), load_checkpoint(tmp_path / 'resumed' / LAST)
    assert a['epoch'] == b['epoch'] == 3
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k


@pytest.mark.parametrize('direction', ['a2v', 'v2a'])
def test_dmin_matcher_trains_in_both_directions(tiny_ave, tmp_path, direction):
    metrics = train(tiny_ave, tmp_path / 'run', '--model', 'dmin', '--direction', direction,
                    '--batch_size', '16', *SMALL_DMIN, epochs=1)
    assert metrics['direction'] == direction and metrics['history'][0]['directions'].keys() == {
        'a2v', 'v2a'}
    assert 0.0 <= metrics['test_accuracy'] <= 100.0
    best_checkpoint(tmp_path / 'run', direction.upper())


def test_dcmr_is_one_model_per_direction(tiny_ave, tmp_path, capsys):
    metrics = train(tiny_ave, tmp_path / 'run', *SMALL_DCMR, '--direction', 'v2a', epochs=1)
    assert metrics['protocol'] == 'dcmr' and metrics['history'][0]['directions'].keys() == {'v2a'}
    best = best_checkpoint(tmp_path / 'run', 'V2A')
    line = cml_error(capsys, ['--evaluate', '--resume', best, '--data_root', tiny_ave,
                              '--direction', 'a2v'])
    assert 'is a DCMR model of v2a' in line and '--direction v2a' in line
    line = cml_error(capsys, ['--evaluate', '--resume', best, '--data_root', tiny_ave,
                              '--protocol', 'avel'])
    assert 'checkpoint of the dcmr protocol' in line


def test_another_model_is_one_line(avel_run, tiny_ave, capsys):
    best = best_checkpoint(avel_run[0], 'A2V')
    line = cml_error(capsys, ['--evaluate', '--resume', best, '--data_root', tiny_ave,
                              '--model', 'dmin'])
    assert 'is a checkpoint of avel, not dmin' in line


def test_a_localization_script_refuses_a_cross_modality_checkpoint(avel_run, tiny_ave, capsys):
    best = best_checkpoint(avel_run[0], 'A2V')
    line = user_error(capsys, 'supervised', ['--evaluate', '--resume', best, '--data_root',
                                             tiny_ave])
    assert 'cml' in line and 'cml_test.sh' in line


def private(root, tmp_path):
    folder = tmp_path / 'data'
    folder.mkdir()
    for src in root.iterdir():
        (folder / src.name).symlink_to(src)
    return folder


def write_order(path, rows):
    path.unlink()
    with h5py.File(path, 'w') as f:
        f[ORDER_KEY] = np.asarray(rows, dtype=np.int64)


def test_videos_the_checkpoint_was_trained_on_are_refused(avel_run, tiny_ave, tmp_path, capsys):
    """A data folder whose match test split holds training videos (as the localization
    splits would: most match-test videos are localization training videos)."""
    best = best_checkpoint(avel_run[0], 'A2V')
    folder = private(tiny_ave, tmp_path)
    with h5py.File(tiny_ave / MATCH_ORDER_FILES['train']) as f:
        trained = f[ORDER_KEY][:]
    with h5py.File(tiny_ave / MATCH_ORDER_FILES['test']) as f:
        test = f[ORDER_KEY][:]
    closs = h5py.File(tiny_ave / CLOSS_FILE)[FEATURE_KEY][:]
    partial = [r for r in trained if 0 < closs[r].sum() < 10][:1]
    # the train split keeps its rows: the leaked video moves from train to test
    write_order(folder / MATCH_ORDER_FILES['train'], [r for r in trained if r not in partial])
    write_order(folder / MATCH_ORDER_FILES['test'], [*test, *partial])
    line = cml_error(capsys, ['--evaluate', '--resume', best, '--data_root', folder])
    assert f'was trained on 1 of these {len(test) + 1} test videos' in line
    assert f'file row {partial[0]}' in line
    capsys.readouterr()
    with pytest.raises(SystemExit):
        predict(['--checkpoint', str(best), '--data_root', str(folder), '--split', 'test',
                 '--out', str(tmp_path / 'p.json'), '--no_progress'])
    assert 'was trained on 1 of these' in capsys.readouterr().err


def test_bad_data_is_one_line(tiny_ave, tmp_path, capsys):
    folder = private(tiny_ave, tmp_path)
    (folder / CLOSS_FILE).unlink()
    line = cml_error(capsys, ['--data_root', folder, '--snapshot_pref', tmp_path / 'r'])
    assert CLOSS_FILE in line and 'python -m dataset.labels' in line
    closs = h5py.File(tiny_ave / CLOSS_FILE)[FEATURE_KEY][:]
    with h5py.File(tiny_ave / MATCH_ORDER_FILES['test']) as f:
        row = int(f[ORDER_KEY][0])
    closs[row] = 0
    closs[row, [1, 2, 5]] = 1                      # two runs of event segments
    with h5py.File(folder / CLOSS_FILE, 'w') as f:
        f[FEATURE_KEY] = closs
    line = cml_error(capsys, ['--data_root', folder, '--snapshot_pref', tmp_path / 'r'])
    assert f'video row {row} an event in 2 separate parts' in line
    assert not (tmp_path / 'r').exists()


def test_visual_vectors_are_derived_from_the_maps_where_absent(tiny_ave, tmp_path):
    folder = private(tiny_ave, tmp_path)
    (folder / VISUAL_VEC_FILE).unlink()
    derived = load_match(folder, progress=False)
    stored = load_match(tiny_ave, progress=False)
    assert 'averaged over its 7 x 7 positions' in derived.visual_source
    assert stored.visual_source == VISUAL_VEC_FILE
    torch.testing.assert_close(derived.visual, stored.visual, rtol=1e-5, atol=1e-6)


def test_predict_prints_the_window_of_each_video(avel_run, tiny_ave, tmp_path, capsys):
    best = best_checkpoint(avel_run[0], 'A2V')
    capsys.readouterr()
    doc = predict(['--checkpoint', str(best), '--data_root', str(tiny_ave), '--split', 'test',
                   '--out', str(tmp_path / 'p.json'), '--no_progress'])
    out = capsys.readouterr().out
    assert doc['num_videos'] == 6 and len(doc['videos']) == 6
    assert json.loads((tmp_path / 'p.json').read_text())['videos'] == doc['videos']
    first = doc['videos'][0]
    assert (f"row {first['row']}: audio {first['start']}-{first['start'] + first['length']} s "
            f"-> visual {first['predicted_start']}-") in out
    hits = sum(v['predicted_start'] == v['start'] for v in doc['videos'])
    assert doc['accuracy'] == pytest.approx(100 * hits / 6)
    with pytest.raises(SystemExit):
        predict(['--checkpoint', str(best), '--video', str(tmp_path / 'x.mp4'), '--out',
                 str(tmp_path / 'q.json')])
    assert '--video goes with a localization checkpoint' in capsys.readouterr().err


# -- the release's files -----------------------------------------------------------------

def test_the_release_match_splits(meta_dir):
    """3339 / 402 / 402 rows, disjoint, all 4143 videos; every test video has a partial event
    of 2 to 9 segments; 314 of the 402 test videos are in the localization train split."""
    def order(name):
        with h5py.File(meta_dir / name) as f:
            return f[ORDER_KEY][:]

    match = {s: order(MATCH_ORDER_FILES[s]) for s in ('train', 'val', 'test')}
    assert {s: len(o) for s, o in match.items()} == {'train': 3339, 'val': 402, 'test': 402}
    assert sorted(np.concatenate(list(match.values())).tolist()) == list(range(4143))
    with h5py.File(meta_dir / CLOSS_FILE) as f:
        closs = f[FEATURE_KEY][:]
    length = closs[match['test']].sum(1)
    assert length.min() == 2 and length.max() == 9
    assert len(np.intersect1d(match['test'], order(ORDER_FILES['train']))) == 314


def test_labels_closs_is_built_from_the_annotations(meta_dir):
    labels, _ = build_labels(read_annotations(meta_dir / ANNOTATIONS_FILE))
    with h5py.File(meta_dir / CLOSS_FILE) as f:
        released = f[FEATURE_KEY][:]
    built = event_segments(labels)
    assert built.dtype == released.dtype and np.array_equal(built, released)


def test_the_release_event_segments_are_one_run_each(meta_dir):
    from dataset.matching import check_contiguous
    with h5py.File(meta_dir / CLOSS_FILE) as f:
        closs = f[FEATURE_KEY][:].astype(bool)
    check_contiguous(closs, CLOSS_FILE, np.arange(len(closs)))   # raises DataError if not
    broken = closs[:1].copy()
    broken[0, :] = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    with pytest.raises(DataError, match='2 separate parts'):
        check_contiguous(broken, CLOSS_FILE, np.arange(1))
