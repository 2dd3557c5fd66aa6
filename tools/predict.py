"""The events a trained DMIN checkpoint (either setting) sees in videos, as JSON, CSV and plots.

    python tools/predict.py --checkpoint CKPT --data_root DIR [--split test] --out preds.json
    python tools/predict.py --checkpoint CKPT --audio A.h5 --visual V.h5 [--labels L.h5] \\
                            --out preds.json
      [--csv events.csv] [--plot DIR [--plot_videos N]] [--annotations Annotations.txt]
      [--setting supervised|weak] [--device auto] [--batch_size 16] [--no_progress]

Input is one split of an AVE data folder, or new videos: an audio and a visual HDF5 file in
the AVE layout (key 'avadataset', shapes (N, 10, 128) and (N, 10, 7, 7, 512), any float
dtype), optionally with segment labels (N, 10, 29). The setting and the model's config come
from the checkpoint. Per video the JSON holds each segment's class and confidence and the
events: runs of one class merged into intervals [start_s, end_s) with the mean confidence
as score (README, "Predict"). Every bad input stops with one line and exit status 2.
"""
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset import layout as L  # noqa: E402
from dataset.ave import (check_float, check_one_hot, check_same_count, check_shape,  # noqa: E402
                         find_file, load_ave, open_h5, read_features, read_key)
from dataset.labels import read_annotations  # noqa: E402
from model.dmin import MODEL_KEYS, SETTINGS, build_model  # noqa: E402
from utils.checkpoint import load_checkpoint, load_model_state, write_text  # noqa: E402
from utils.config import Parser  # noqa: E402
from utils.engine import autocast  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402
from utils.metrics import event_summary, merge_events, report  # noqa: E402
from utils.run import resolve_device, write_report  # noqa: E402

CSV_FIELDS = ('index', 'row', 'video_id', 'class', 'class_name', 'start_s', 'end_s', 'score')


def build_parser():
    parser = Parser(
        prog='tools/predict.py',
        description='Predict audio-visual events with a DMIN checkpoint: per-segment classes '
                    'and confidences and merged event intervals, as JSON (and CSV, plots).')
    parser.add_argument('--checkpoint', required=True, metavar='CKPT',
                        help='a best-model or last.pth.tar checkpoint of either setting')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data_root', metavar='DIR', help='an AVE data folder (see README)')
    source.add_argument('--audio', metavar='A.h5',
                        help="new videos' audio features (N, 10, 128), key 'avadataset'")
    parser.add_argument('--split', default='test', choices=tuple(L.ORDER_FILES),
                        help='with --data_root: the split to predict (default: test)')
    parser.add_argument('--visual', metavar='V.h5',
                        help="with --audio: the visual features (N, 10, 7, 7, 512)")
    parser.add_argument('--labels', metavar='L.h5',
                        help='with --audio, optional: one-hot segment labels (N, 10, 29), '
                             'for accuracy and ground truth in the output')
    parser.add_argument('--annotations', metavar='PATH',
                        help='optional Annotations.txt whose line i describes video row i: '
                             'adds YouTube ids and annotated classes to the output')
    parser.add_argument('--out', required=True, metavar='FILE.json', help='the JSON to write')
    parser.add_argument('--csv', metavar='FILE.csv', help='also write the events, one row each')
    parser.add_argument('--plot', metavar='DIR',
                        help='write timeline PNGs (and, with labels, the confusion matrix, '
                             'per-class accuracy and report) to DIR')
    parser.add_argument('--plot_videos', type=int, default=10, metavar='N',
                        help='timelines for the first N videos (default: 10)')
    parser.add_argument('--setting', choices=SETTINGS,
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
    if args.batch_size <= 0:
        raise UserError(f'--batch_size {args.batch_size} is invalid: must be > 0')
    if args.plot_videos < 0:
        raise UserError(f'--plot_videos {args.plot_videos} is invalid: must be >= 0')
    return args


# ----------------------------------------------------------------------------- inputs

class FolderVideos:
    """One split of an AVE data folder, loaded by dataset.ave (features on `device`)."""

    def __init__(self, root, split, device, progress):
        # The supervised files suffice: prediction needs no video labels or background videos.
        self.data = load_ave(root, (split,), 'supervised', background=False, device=device,
                             progress=progress)
        self.order = self.data.splits[split]                          # (N,) tensor rows
        self.rows = self.data.source_rows[self.order.cpu().numpy()]   # (N,) data-folder rows
        self.labels = self.data.segment[self.order].cpu()             # (N, T)
        with open_h5(find_file(Path(root), L.AUDIO_FILES)) as f:
            self.total = read_key(f, L.FEATURE_KEY).shape[0]
        self.source = {'data_root': str(root), 'split': split}

    def __len__(self):
        return len(self.order)

    def batches(self, size):
        for start in range(0, len(self), size):
            audio, visual, _ = self.data.batch(self.order[start:start + size])
            yield audio, visual                                       # (B, T, 128), (B, T, 7, 7, 512)

    def close(self):
        pass


def _existing(path, flag):
    if not Path(path).is_file():
        raise UserError(f'{flag} {path} not found; give the path of an HDF5 file')
    return path


class FileVideos:
    """New videos from HDF5 files in the AVE layout, read batch by batch (float32)."""

    def __init__(self, audio, visual, labels, device):
        self.files = []
        try:
            self._check(audio, visual, labels)
        except BaseException:
            self.close()
            raise
        self.rows = np.arange(self.total)
        self.device = device
        self.source = {'audio': str(audio), 'visual': str(visual), 'labels': labels and str(labels)}

    def _check(self, audio, visual, labels):
        """Open the files and check their keys, shapes, dtypes, counts and one-hot labels."""
        self.audio = self._open(_existing(audio, '--audio'))
        self.visual = self._open(_existing(visual, '--visual'))
        T = L.NUM_SEGMENTS
        counts = {audio: check_shape(self.audio, (T, L.AUDIO_DIM), 'audio features'),
                  visual: check_shape(self.visual, (T, *L.VISUAL_SHAPE), 'visual features')}
        check_float(self.audio)
        check_float(self.visual)
        self.labels = None
        if labels:
            ds = self._open(_existing(labels, '--labels'))
            counts[labels] = check_shape(ds, (T, L.NUM_CLASSES + 1), 'one-hot segment labels')
            one_hot = ds[()]
            check_one_hot(one_hot, labels)
            self.labels = torch.from_numpy(one_hot.argmax(-1)).long()  # (N, T)
        check_same_count(counts)
        self.total = counts[audio]

    def _open(self, path):
        f = open_h5(path)
        self.files.append(f)
        return read_key(f, L.FEATURE_KEY)

    def __len__(self):
        return self.total

    def batches(self, size):
        for start in range(0, self.total, size):
            rows = np.arange(start, min(start + size, self.total))
            audio = torch.empty((len(rows), L.NUM_SEGMENTS, L.AUDIO_DIM), device=self.device)
            visual = torch.empty((len(rows), L.NUM_SEGMENTS, *L.VISUAL_SHAPE), device=self.device)
            # A NaN names the file and row; these files have no order files to drop it from.
            skip = 'leave that video out of the file'
            read_features(self.audio, rows, audio, 'audio', progress=False, skip=skip)
            read_features(self.visual, rows, visual, 'visual', progress=False, skip=skip)
            yield audio, visual

    def close(self):
        for f in self.files:
            f.close()


# ----------------------------------------------------------------------------- model

def load_model(path, wanted_setting, device):
    """The checkpoint's DMIN in eval mode on `device`, its setting and the checkpoint dict."""
    if not Path(path).is_file():
        raise UserError(f'--checkpoint {path} not found; give a .pth.tar file of a run folder '
                        '(a best-model checkpoint or last.pth.tar)')
    state = load_checkpoint(path)
    setting = state.get('setting')
    if setting not in SETTINGS:
        raise UserError(f'{path} names no DMIN setting ({setting!r}); use a checkpoint written '
                        'by supv_main.py or weak_main.py')
    if wanted_setting and wanted_setting != setting:
        raise UserError(f'{path} is a {setting} checkpoint, not {wanted_setting}; drop --setting '
                        f'or use a {wanted_setting} checkpoint')
    missing = [k for k in MODEL_KEYS if k not in state['config']]
    if missing:
        raise UserError(f"{path} has no model config ({', '.join(missing)} missing); use a "
                        'checkpoint written by supv_main.py or weak_main.py')
    model = build_model(state['config'], setting)
    load_model_state(model, state, path)
    return model.to(device).eval(), setting, state


@torch.no_grad()
def predict(model, videos, batch_size, amp, progress):
    """(N, T) predicted classes and (N, T) confidences of all videos, on the CPU.

    Results stay on the device until the end, so the batches run without a host sync.
    """
    preds, confidence = [], []
    with tqdm(total=len(videos), desc='predict', unit='video', disable=not progress) as bar:
        for audio, visual in videos.batches(batch_size):
            with autocast(audio.device, amp):
                outputs = model(audio, visual)
            outputs = {k: v.float() for k, v in outputs.items()}
            preds.append(model.predict(outputs))
            confidence.append(model.confidence(outputs))
            bar.update(len(audio))
    return torch.cat(preds).cpu(), torch.cat(confidence).cpu()


# ----------------------------------------------------------------------------- outputs

def video_entry(index, row, preds, confidence, labels=None, annotation=None):
    """The JSON record of one video: its segments, its events (and ground truth)."""
    entry = {'index': index, 'row': int(row)}
    if annotation is not None:
        entry['video_id'] = annotation.video_id
        entry['annotated_class'] = annotation.category
    segments = []
    for t, (c, p) in enumerate(zip(preds.tolist(), confidence.tolist())):
        segment = {'start_s': t, 'end_s': t + 1, 'class': c, 'class_name': L.LABEL_NAMES[c],
                   'confidence': round(p, 4)}
        if labels is not None:
            segment['label'] = int(labels[t])
            segment['label_name'] = L.LABEL_NAMES[int(labels[t])]
        segments.append(segment)
    entry['segments'] = segments
    entry['events'] = [{**e, 'score': round(e['score'], 4)}
                       for e in merge_events(preds.tolist(), confidence.tolist())]
    if labels is not None:
        entry['true_events'] = merge_events(labels.tolist())
    return entry


def to_json(value, level=0):
    """JSON text indented one space per level, with each flat object or list (a segment,
    an event) on one line, so that a video reads as one block of short lines."""
    inner = value.values() if isinstance(value, dict) else value
    if not isinstance(value, (dict, list)) or (
            level > 0 and not any(isinstance(v, (dict, list)) for v in inner)):
        return json.dumps(value)
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
            writer.writerow({'index': video['index'], 'row': video['row'],
                             'video_id': video.get('video_id', ''), **event})
    return buffer.getvalue()


def write_plots(folder, entries, preds, confidence, labels, rep, count, header):
    """Timelines of the first `count` videos, and the report's figures when labels exist."""
    from utils import plots
    paths = []
    for entry in entries[:count]:
        i = entry['index']
        name = entry.get('video_id') or f"row{entry['row']}"
        title = f"video {i}, row {entry['row']}"
        if 'video_id' in entry:
            title += f", YouTube id {entry['video_id']} ({entry['annotated_class']})"
        fig = plots.timeline_figure(title, preds[i], confidence[i],
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


def _make_dir(folder):
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'cannot create folder {folder} ({e.strerror}); choose a writable path')
    return Path(folder)


def _create_parent(path):
    _make_dir(Path(path).parent)
    return Path(path)


@exit_on_user_error
def main(argv=None):
    """Run the command line; returns the JSON document it wrote."""
    args = parse_args(argv)
    out = _create_parent(args.out)      # unwritable places fail now, not after the work
    if args.csv:
        _create_parent(args.csv)
    if args.plot:
        _make_dir(args.plot)
    device = resolve_device(args.device)
    model, setting, state = load_model(args.checkpoint, args.setting, device)
    if args.data_root:
        videos = FolderVideos(args.data_root, args.split, device, args.progress)
    else:
        videos = FileVideos(args.audio, args.visual, args.labels, device)
    try:
        annotations = (read_video_annotations(args.annotations, videos.total)
                       if args.annotations else None)
        preds, confidence = predict(model, videos, args.batch_size,
                                    state['config'].get('amp', 'none'), args.progress)
    finally:
        videos.close()
    labels = videos.labels
    entries = [video_entry(i, row, preds[i], confidence[i],
                           None if labels is None else labels[i],
                           None if annotations is None else annotations[row])
               for i, row in enumerate(videos.rows)]
    doc = {'checkpoint': str(args.checkpoint), 'setting': setting, 'epoch': state.get('epoch'),
           'input': videos.source, 'segment_seconds': 1, 'num_videos': len(entries)}
    rep = None
    if labels is not None:
        rep = report(labels, preds)
        doc['accuracy'] = rep['accuracy']
        doc['event_detection'] = rep['event_detection']
    doc['videos'] = entries

    write_text(out, to_json(doc) + '\n')
    print(f"{len(entries)} videos, {sum(len(e['events']) for e in entries)} events -> {out}")
    if rep is not None:
        print(f"segment accuracy: {rep['accuracy']:.3f}; {event_summary(rep)}")
    if args.csv:
        write_text(Path(args.csv), events_csv(entries))
        print(f'events CSV -> {args.csv}')
    if args.plot:
        folder = Path(args.plot)
        name = args.split if args.data_root else f'videos of {Path(args.audio).name}'
        paths = write_plots(folder, entries, preds, confidence, labels, rep, args.plot_videos,
                            f'{name} split' if args.data_root else name)
        if rep is not None:
            write_report(folder, {name: rep}, {'setting': setting, 'epoch': state.get('epoch'),
                                               'checkpoint': str(args.checkpoint)})
        print(f'{len(paths)} plots -> {folder}')
    return doc


if __name__ == '__main__':
    main()
