"""The events a trained checkpoint (any method, either setting) sees in videos, as JSON, CSV and plots.

    python tools/predict.py --checkpoint CKPT --data_root DIR [--split test] --out preds.json
    python tools/predict.py --checkpoint CKPT --audio A.h5 --visual V.h5 [--labels L.h5] \\
                            --out preds.json
    python tools/predict.py --checkpoint CKPT --video FILE [FILE ...] --out preds.json \\
                            [--features DIR] [extraction flags of extract_features.sh]
      [--csv events.csv] [--plot DIR [--plot_videos N]] [--annotations Annotations.txt]
      [--setting supervised|weak] [--device auto] [--batch_size 16] [--no_progress]

Input is one split of an AVE data folder, or new videos: an audio and a visual HDF5 file in
the AVE layout (key 'avadataset', shapes (N, T, 128) and (N, T, 7, 7, 512) with T = 10 in
AVE, any float dtype), optionally with segment labels (N, T, C + 1). The setting, the
model's config, the class names and the shapes the features must have come from the
checkpoint. Per video the JSON holds each segment's class and confidence and the
events: runs of one class merged into intervals [start_s, end_s) with the mean confidence
as score (docs/usage.md, "Predict events in videos"). With --video, the features are first extracted from the
files (features/extract.py; T from the checkpoint), a long video's windows are put back
together, and its segments and events run over its whole length. Every bad input stops
with one line and exit status 2; a bad video among several is listed at the end (exit 2)
after the others' predictions are written.

A cross-modality localization checkpoint (cml_main.py) takes --data_root and --split only:
it prints, per video of that match split, the query's segments and the window it is found
in, and writes them as JSON (docs/cml.md).
"""
import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from core.atomic import write_text  # noqa: E402
from core.errors import UserError, exit_on_user_error  # noqa: E402
from dataset import layout as L  # noqa: E402
from dataset.ave import AVEData, load_ave, load_videos  # noqa: E402
from dataset.labels import read_annotations  # noqa: E402
import cml  # noqa: E402
from engine.checkpoint import (check_setting, load_checkpoint, matcher_for, model_for,  # noqa: E402
                               saved_spec)
from engine.logger import setup_logging  # noqa: E402
from engine.matching import localize  # noqa: E402
from engine.config import SCRIPTS, Parser, program_name  # noqa: E402
from engine.device import allocation_errors, free_memory, resolve_device  # noqa: E402
from engine.loop import infer  # noqa: E402
from features import extract  # noqa: E402
from model import method_name  # noqa: E402
from model.matching import DIRECTIONS, modalities  # noqa: E402
from reports.metrics import event_summary, merge_events, report  # noqa: E402
from reports.matching import localization_report, video_records  # noqa: E402
from reports.report import make_folder, write_report  # noqa: E402

CSV_FIELDS = ('index', 'row', 'video_id', 'class', 'class_name', 'start_s', 'end_s', 'score')


def build_parser():
    parser = Parser(
        prog=program_name('tools/predict.py'),
        description='Predict audio-visual events with a checkpoint of any method: per-segment classes '
                    'and confidences and merged event intervals, as JSON (and CSV, plots); with a '
                    'cross-modality checkpoint, the window each query of --split is found in.',
        example='bash predict.sh --checkpoint runs/supervised/last.pth.tar --data_root data '
                '--split test --out preds.json --plot plots')
    parser.add_argument('--checkpoint', required=True, metavar='CKPT',
                        help='a best-model or last.pth.tar checkpoint of any setting')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data_root', metavar='DIR', help='an AVE data folder (see README)')
    source.add_argument('--audio', metavar='A.h5',
                        help="new videos' audio features (N, T, 128), key 'avadataset'")
    source.add_argument('--video', nargs='+', metavar='FILE',
                        help='video files (or folders, .txt lists): their features are '
                             'extracted (flags below, as extract_features.sh) and their events '
                             'predicted over their whole length')
    parser.add_argument('--split', default='test', choices=tuple(L.ORDER_FILES),
                        help='with --data_root: the split to predict (default: test)')
    parser.add_argument('--visual', metavar='V.h5',
                        help="with --audio: the visual features (N, T, 7, 7, 512)")
    parser.add_argument('--labels', metavar='L.h5',
                        help='with --audio, optional: one-hot segment labels (N, T, C + 1), '
                             'for accuracy and ground truth in the output')
    parser.add_argument('--annotations', metavar='PATH',
                        help='optional Annotations.txt whose line i describes video row i: '
                             'adds YouTube ids and annotated classes to the output')
    parser.add_argument('--features', metavar='DIR',
                        help='with --video: keep the extracted features in this data folder (an '
                             'interrupted run continues there); default: a temporary folder')
    extract.add_flags(parser, segments=False)
    parser.add_argument('--out', required=True, metavar='FILE.json', help='the JSON to write')
    parser.add_argument('--csv', metavar='FILE.csv', help='also write the events, one row each')
    parser.add_argument('--plot', metavar='DIR',
                        help='write timeline PNGs (and, with labels, the confusion matrix, '
                             'per-class accuracy and report) to DIR')
    parser.add_argument('--plot_videos', type=int, default=10, metavar='N',
                        help='timelines for the first N videos (default: 10)')
    parser.add_argument('--setting', choices=tuple(SCRIPTS),
                        help="require the checkpoint to be of this setting (it is read from "
                             "the checkpoint either way)")
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--batch_size', type=int, default=16, help='videos per step (default: 16)')
    parser.add_argument('--no_progress', dest='progress', action='store_false',
                        help='no progress bars')
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.audio and not args.visual:
        raise UserError('--audio needs --visual V.h5, the visual features of the same videos')
    if args.data_root and (args.visual or args.labels):
        raise UserError('--visual and --labels go with --audio; with --data_root the features '
                        'and labels come from the data folder')
    if args.video and args.annotations:
        raise UserError('--annotations goes with --data_root or --audio: the rows of extracted '
                        'videos are windows, not lines of Annotations.txt')
    if not args.video:
        extraction = argparse.ArgumentParser()     # the flags add_flags gives, and defaults
        extract.add_flags(extraction, segments=False)
        defaults = {'features': None, **vars(extraction.parse_args([]))}
        given = [f'--{k}' for k, v in defaults.items() if getattr(args, k) != v]
        if given:
            raise UserError(f'{given[0]} goes with --video: it sets how features are extracted '
                            'from video files')
    extract.check_flags(args)
    if args.batch_size <= 0:
        raise UserError(f'--batch_size {args.batch_size} is invalid: must be > 0')
    if args.plot_videos < 0:
        raise UserError(f'--plot_videos {args.plot_videos} is invalid: must be >= 0')
    return args


# ----------------------------------------------------------------------------- inputs

@dataclass
class Input:
    """What predict was given, read: the data, the rows to predict and how to name them."""
    data: AVEData
    rows: torch.Tensor      # (N,) rows of `data` to predict
    source: dict            # the JSON's 'input'
    name: str               # what the report calls these videos: the split, or 'videos ...'
    title: str              # and the plots
    feature_files: list     # the feature files (extracted with random weights?)
    folder: Path = None     # --video: the data folder of the features extracted from them


def read_input(args, state, device, stack):
    """The input of the command line, decided here once: --video (extracted first, into
    --features or a temporary folder that `stack` deletes), --data_root, or --audio and
    --visual (and --labels). Returns (Input, the videos that could not be extracted)."""
    if args.video:
        folder = Path(args.features) if args.features else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix='dmin_features_')))
        failures = extract_videos(args, state, device, folder)
        audio, visual = folder / L.AUDIO_FILES[0], folder / L.VISUAL_FILE
        data = load_videos(audio, visual, device=device, progress=args.progress)
        return Input(data, data.splits['videos'], {'videos': [str(v) for v in args.video]},
                     'videos', 'videos', [visual], folder), failures
    if args.data_root:
        # The supervised files suffice: prediction needs no video labels or background videos.
        root = Path(args.data_root)
        data = load_ave(root, (args.split,), 'supervised', background=False, device=device,
                        progress=args.progress, in_memory='auto',
                        memory_budget=free_memory(device))
        return Input(data, data.splits[args.split], {'data_root': str(root), 'split': args.split},
                     args.split, f'{args.split} split',
                     [root / n for n in (*L.AUDIO_FILES, L.VISUAL_FILE)]), []
    data = load_videos(existing(args.audio, '--audio'), existing(args.visual, '--visual'),
                       args.labels and existing(args.labels, '--labels'), device,
                       progress=args.progress)
    return Input(data, data.splits['videos'],
                 {'audio': str(args.audio), 'visual': str(args.visual),
                  'labels': args.labels and str(args.labels)},
                 *[f'videos of {Path(args.audio).name}'] * 2, [args.audio, args.visual]), []


def existing(path, flag):
    if not Path(path).is_file():
        raise UserError(f'{flag} {path} not found; give the path of an HDF5 file')
    return path


def extract_videos(args, state, device, folder):
    """Extract --video into `folder` as the checkpoint's data were (its segment count, and
    the sizes VGGish and VGG-19 give); returns the failures [(video, reason)]."""
    trained_on = saved_spec(state, args.checkpoint)
    settings = extract.settings_of(args, trained_on.num_segments)
    trained_on.check(extract.output_spec(settings), args.checkpoint)
    rows, failures = extract.extract_folder(
        extract.gather_videos(args.video), folder,
        lambda: extract.build_extractor(args, device, trained_on.num_segments), settings,
        progress=args.progress)
    if rows == 0:
        extract.stop_on_failures(failures, len(failures), folder)
    return failures


# ----------------------------------------------------------------------------- outputs

def row_head(index, row, annotation=None):
    """What identifies a video given as a row of feature files: index, row (and its
    Annotations.txt line)."""
    head = {'index': index, 'row': int(row)}
    if annotation is not None:
        head['video_id'] = annotation.video_id
        head['annotated_class'] = annotation.category
    return head


def video_entry(head, names, preds, confidence, labels=None):
    """The JSON record of one video: `head` (what identifies it), then its segments, its
    events (and ground truth); `names` are the checkpoint's label names."""
    entry = dict(head)
    segments = []
    for t, (c, p) in enumerate(zip(preds.tolist(), confidence.tolist())):
        segment = {'start_s': t, 'end_s': t + 1, 'class': c, 'class_name': names[c],
                   'confidence': round(p, 4)}
        if labels is not None:
            segment['label'] = int(labels[t])
            segment['label_name'] = names[int(labels[t])]
        segments.append(segment)
    entry['segments'] = segments
    entry['events'] = [{**e, 'score': round(e['score'], 4)}
                       for e in merge_events(preds.tolist(), names, confidence.tolist())]
    if labels is not None:
        entry['true_events'] = merge_events(labels.tolist(), names)
    return entry


def to_json(value, level=0):
    """JSON text indented one space per level, with each flat object or list (a segment,
    an event) on one line, so that a video reads as one block of short lines."""
    inner = value.values() if isinstance(value, dict) else value
    if not isinstance(value, (dict, list)) or (
            level > 0 and not any(isinstance(v, (dict, list)) for v in inner)):
        return json.dumps(value, allow_nan=False)
    pad = ' ' * (level + 1)
    if isinstance(value, dict):
        items = [f'{pad}{json.dumps(k)}: {to_json(v, level + 1)}' for k, v in value.items()]
        return '{\n' + ',\n'.join(items) + '\n' + ' ' * level + '}'
    items = [pad + to_json(v, level + 1) for v in value]
    return '[\n' + ',\n'.join(items) + '\n' + ' ' * level + ']'


def events_csv(videos):
    """CSV text with one line per predicted event of the JSON `videos` records."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator='\n')
    writer.writeheader()
    for video in videos:
        for event in video['events']:
            writer.writerow({'index': video['index'], 'row': video.get('row', ''),
                             'video_id': video.get('video_id', video.get('video', '')), **event})
    return buffer.getvalue()


def write_plots(folder, entries, names, series, labels, rep, count, header):
    """Timelines of the first `count` videos (`series`: their (classes, confidences)), and
    the report's figures when labels exist."""
    from reports import plots
    paths = []
    for entry, (preds, confidence) in zip(entries[:count], series):
        i = entry['index']
        if 'video' in entry:   # a video file, over its whole length
            name = Path(entry['video']).stem
            title = f"{Path(entry['video']).name} ({entry['seconds']:g} s)"
        else:
            name = entry.get('video_id') or f"row{entry['row']}"
            title = f"video {i}, row {entry['row']}"
        if 'video_id' in entry:
            title += f", YouTube id {entry['video_id']} ({entry['annotated_class']})"
        fig = plots.timeline_figure(title, preds, names, confidence,
                                    None if labels is None else labels[i])
        paths.append(plots.save(fig, folder / f'timeline_{i:04d}_{name}.png'))
    if rep is not None:
        paths += plots.save_report_figures(folder, rep, header)
    return paths


def read_video_annotations(path, total):
    try:
        annotations = read_annotations(path)
    except (OSError, ValueError) as e:
        raise UserError(f'--annotations: {e}') from None
    if len(annotations) != total:
        raise UserError(f'--annotations {path} has {len(annotations)} lines but the input holds '
                        f'{total} videos; line i must describe video row i')
    return annotations


@contextlib.contextmanager
def made_folder(folder, flag):
    """Create `folder` (a UserError naming `flag` if impossible); if the block fails, the
    folders this made are removed again where they are still empty."""
    folder = Path(folder).absolute()
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    make_folder(folder, flag)
    try:
        yield folder
    except BaseException:
        for f in missing:                     # the deepest first
            with contextlib.suppress(OSError):
                f.rmdir()
        raise


@contextlib.contextmanager
def made_for(path, flag):
    """made_folder for the folder of file `path`; yields `path`."""
    with made_folder(Path(path).parent, flag):
        yield Path(path)


def entries(inp, names, preds, confidence, labels, annotations):
    """(JSON records, [(classes, confidences)] for the timelines): per video file over its
    whole length (its windows put back in order) for --video, else per row."""
    if inp.folder is not None:
        records, series = [], []
        for i, (file, rows, seconds, segments) in enumerate(extract.video_rows(inp.folder)):
            p, c = preds[rows].reshape(-1)[:segments], confidence[rows].reshape(-1)[:segments]
            records.append(video_entry({'index': i, 'video': file, 'seconds': seconds,
                                        'rows': rows}, names, p, c))
            series.append((p, c))
        return records, series
    file_rows = inp.data.source_rows[inp.rows.cpu().numpy()]
    records = [video_entry(row_head(i, row, None if annotations is None else annotations[row]),
                           names, preds[i], confidence[i], None if labels is None else labels[i])
               for i, row in enumerate(file_rows)]
    return records, list(zip(preds, confidence))


@exit_on_user_error
def main(argv=None):
    """Run the command line; returns the JSON document it wrote."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        # Unwritable places fail now, not after the work; what this run made for its outputs
        # is removed again if it fails.
        out = stack.enter_context(made_for(args.out, '--out'))
        if args.csv:
            stack.enter_context(made_for(args.csv, '--csv'))
        if args.plot:
            stack.enter_context(made_folder(args.plot, '--plot'))
        device = resolve_device(args.device)
        state = load_checkpoint(args.checkpoint, flag='--checkpoint')
        check_setting(state, args.setting, args.checkpoint,
                      fix='drop --setting or pass a checkpoint of that setting')
        if state['setting'] == 'cml':
            return predict_windows(args, state, device, out)
        inp, failures = read_input(args, state, device, stack)
        doc = predict(args, state, device, out, inp)
    extract.stop_on_failures(failures, len(failures) + doc['num_videos'], out)
    return doc


def predict_windows(args, state, device, out):
    """Cross-modality localization: the window each video's query is found in, for the videos
    of --split of a data folder's match splits (labels_closs.h5 gives each query)."""
    given = [flag for flag, value in (('--audio', args.audio), ('--video', args.video),
                                      ('--csv', args.csv), ('--plot', args.plot),
                                      ('--annotations', args.annotations)) if value]
    if given:
        raise UserError(f'{given[0]} goes with a localization checkpoint; a cross-modality one '
                        'localizes the events of a data folder\'s match split: pass --data_root '
                        'and --split')
    cfg = {**state['config'], 'data_root': args.data_root, 'progress': args.progress}
    if not isinstance(cfg.get('direction'), str) or cfg['direction'] not in DIRECTIONS:
        raise UserError(f'{args.checkpoint} names no direction; use a checkpoint written by '
                        'cml_main.py')
    log = setup_logging()
    data = cml.load_data(cfg, (args.split,), device, log)
    model = matcher_for(state, args.checkpoint, data.spec).to(device)
    cml.check_unseen(state, data, args.checkpoint, args.split)
    with allocation_errors('--batch_size'):
        rows, predicted, start, length = localize(model, data, args.split, cfg['direction'],
                                                  args.batch_size)
    videos = video_records(data.source_rows[rows.cpu().numpy()], predicted, start, length)
    rep = localization_report(predicted, start, length, data.spec.num_segments)
    doc = {'checkpoint': str(args.checkpoint), 'setting': 'cml', 'direction': cfg['direction'],
           'epoch': state.get('epoch'), 'split': args.split, 'num_videos': len(videos),
           'accuracy': rep['accuracy'], 'videos': videos}
    write_text(out, to_json(doc) + '\n')
    query, answer = modalities(cfg['direction'])
    for v in videos:
        found = v['predicted_start']
        print(f"row {v['row']}: {query} {v['start']}-{v['start'] + v['length']} s -> {answer} "
              f"{found}-{found + v['length']} s{'' if found == v['start'] else ' (wrong)'}")
    print(f"{len(videos)} videos, {cfg['direction'].upper()} accuracy {rep['accuracy']:.3f} -> {out}")
    return doc


def predict(args, state, device, out, inp):
    """Predict `inp` with checkpoint `state`; write the JSON (and CSV, plots); returns the JSON
    document."""
    extract.random_weights_warning(inp.feature_files, 'the features of these videos were')
    model, names = model_for(state, args.checkpoint, inp.data.spec)
    model.to(device)
    annotations = (read_video_annotations(args.annotations, inp.data.file_videos)
                   if args.annotations else None)
    with allocation_errors('--batch_size'):
        preds, confidence = infer(model, inp.data, inp.rows, args.batch_size,
                                  state['config'].get('amp', 'none'), args.progress, 'predict')
    preds, confidence = preds.cpu(), confidence.cpu()
    labels = None if inp.data.segment is None else inp.data.segment[inp.rows].cpu()
    records, series = entries(inp, names, preds, confidence, labels, annotations)
    doc = {'checkpoint': str(args.checkpoint), 'setting': state['setting'],
           'epoch': state.get('epoch'), 'input': inp.source, 'segment_seconds': 1,
           'num_videos': len(records)}
    rep = None
    if labels is not None:
        rep = report(labels, preds, names)
        doc['accuracy'] = rep['accuracy']
        doc['event_detection'] = rep['event_detection']
    doc['videos'] = records

    write_text(out, to_json(doc) + '\n')
    print(f"{len(records)} videos, {sum(len(e['events']) for e in records)} events -> {out}")
    if rep is not None:
        print(f"segment accuracy: {rep['accuracy']:.3f}; {event_summary(rep)}")
    if args.csv:
        write_text(Path(args.csv), events_csv(records))
        print(f'events CSV -> {args.csv}')
    if args.plot:
        paths = write_plots(Path(args.plot), records, names, series, labels, rep,
                            args.plot_videos, inp.title)
        if rep is not None:
            write_report(Path(args.plot), {inp.name: rep}, {
                'setting': state['setting'], 'method': method_name(model),
                'epoch': state.get('epoch'),
                'checkpoint': str(args.checkpoint)})
        print(f'{len(paths)} plots -> {args.plot}')
    return doc


if __name__ == '__main__':
    main()
