"""Video files -> a data folder in the AVE release's layout, resumably.

A video of any length is cut into consecutive windows of T seconds (T = 10 in AVE): one row
per window in `audio_feature.h5` (N, T, 128) and `visual_feature.h5` (N, T, 7, 7, 512),
key 'avadataset', and one tab-separated line per row in `videos.txt`: the row, the window's
start and end second in its video (the end is the video's length in its last window) and
the video's file. The last window of a video is padded (frozen last frame, silence) to T
segments. `extraction.json` keeps the videos, the settings and the videos that failed.

Per segment (second) s of a window:
- visual: the mean over `per_segment` sampled frames (features/video.py) of VGG-19's
  block5_pool map (features/vgg19.py);
- audio: VGGish's embedding (features/vggish.py) of the window's log-mel example s
  (features/logmel.py): with the release's framing (the default) made from second s
  alone, as the release computed them for its 10-second clips; with 'vggish' framing cut
  from the window back to back, every 0.96 s.

Work is saved in parts of at least `chunk` rows under `<out>/.extract/` (each written whole or
not at all), so an interrupted run loses at most one part and the same command continues
where it stopped; the final files are assembled from the parts at the end.
"""
import contextlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from core.atomic import atomic_path, temp_files, write_json, write_text
from core.errors import EXIT_USER_ERROR, UserError, stop
from core.lock import hold
from dataset import layout as L
from dataset.layout import DataSpec
from dataset.h5io import write_h5_chunked
from features import logmel
from features.video import SAMPLINGS, VideoError, decode, segment_count
from features.vggish import EMBEDDING_DIM, embed
from features.vgg19 import MAP_SHAPE

PARTS = '.extract'
LOCK = '.extract.lock'        # held by the extraction writing the folder (its PID inside)
MANIFEST = 'extraction.json'  # the videos and settings: in PARTS while running, then in the folder
VIDEOS_FILE = 'videos.txt'
VIDEOS_HEADER = 'row\tstart_s\tend_s\tfile'
ORIGIN_ATTR = 'extraction'    # JSON of how the features were made (weights, T, frames)
OUTPUTS = (L.AUDIO_FILES[0], L.VISUAL_FILE, VIDEOS_FILE, MANIFEST)


@dataclass
class Clip:
    """The features of one video: W windows of T segments."""
    audio: np.ndarray     # (W, T, 128) float32
    visual: np.ndarray    # (W, T, 7, 7, 512) float32
    seconds: float        # the video's length


class Extractor:
    """The two networks on `device` and how to sample a video."""

    def __init__(self, vgg19, vggish, device, segments, per_segment, batch_size,
                 framing='release', sampling='release'):
        self.vgg19 = vgg19.to(device, memory_format=torch.channels_last)
        self.vggish = vggish.to(device)
        self.device, self.framing, self.sampling = device, framing, sampling
        self.T, self.per_segment, self.batch_size = segments, per_segment, batch_size

    @torch.no_grad()
    def visual(self, window):
        """(T, 7, 7, 512): each segment's mean block5_pool map over its sampled instants."""
        frames = torch.from_numpy(np.stack(window.frames)).to(self.device)   # (F, 224, 224, 3)
        maps = torch.cat([self.vgg19(frames[i:i + self.batch_size])
                          for i in range(0, len(frames), self.batch_size)])  # (F, 7, 7, 512)
        weights = torch.zeros(self.T, len(frames), device=self.device)
        for s, uses in enumerate(window.uses):
            for index, count in uses.items():
                weights[s, index] = count / self.per_segment
        return torch.einsum('sf,fhwc->shwc', weights, maps).cpu().numpy()

    def __call__(self, path):
        windows = {}

        def on_frames(window):
            w = window.first // self.T
            windows[w] = self.visual(window)

        decoded = decode(path, self.per_segment, self.T, on_frames, self.sampling)
        count = math.ceil(decoded.segments / self.T)
        examples = np.concatenate([logmel.examples(decoded.window(w * self.T, self.T),
                                                   decoded.rate, self.T, self.framing)
                                   for w in range(count)])
        audio = embed(self.vggish, examples, self.device).numpy()
        return Clip(audio=audio.reshape(count, self.T, EMBEDDING_DIM),
                    visual=np.stack([windows[w] for w in range(count)]),
                    seconds=decoded.seconds)


# ----------------------------------------------------------------------------- the folder

def resolve(paths):
    return [str(Path(p).resolve()) for p in paths]


class Store:
    """The output folder: parts of finished videos, then the final files."""

    def __init__(self, out, videos, settings, dtype):
        self.out, self.parts = Path(out), Path(out) / PARTS
        self.videos, self.settings, self.dtype = resolve(videos), settings, dtype

    def manifest(self):
        return {'videos': self.videos, 'settings': self.settings,
                'dtype': np.dtype(self.dtype).name}

    def open(self):
        """Create and lock the folder, and delete what a killed run left behind: temporary
        files of the final files, and the parts of a finished run that a kill stopped
        deleting."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f'{self.out}: cannot create this folder ({e.strerror})') from None
        self.lock = hold(self.out / LOCK, f'{self.out} is in use by another extraction (PID '
                         '{pid}); wait for it to end, or choose another folder')
        shutil.rmtree(self.out / (PARTS + '.done'), ignore_errors=True)
        for name in OUTPUTS:
            for tmp in temp_files(self.out, name):
                tmp.unlink()

    def finished(self):
        """True when the folder already holds these videos' features made this way; a
        UserError when it holds other features."""
        done = [self.out / name for name in OUTPUTS if (self.out / name).exists()]
        if not done or self.parts.is_dir():
            return False
        saved, manifest = read_json(self.out / MANIFEST) or {}, self.manifest()
        if len(done) == len(OUTPUTS) and {k: saved.get(k) for k in manifest} == manifest:
            return True
        why = difference(saved, manifest) if len(done) == len(OUTPUTS) else 'an incomplete set'
        raise UserError(f'{self.out} already holds extracted features ({why}); choose another '
                        'folder, or delete them to extract these')

    def start(self):
        """Prepare the parts; returns the index of the first video not yet done."""
        if self.parts.is_dir() and (self.parts / MANIFEST).is_file():
            saved = read_json(self.parts / MANIFEST) or {}
            if {k: saved.get(k) for k in self.manifest()} != self.manifest():
                raise UserError(f'{self.out} holds an unfinished extraction '
                                f'({difference(saved, self.manifest())}); run that same command '
                                f'again to finish it, or delete {self.parts} to start anew')
        else:
            self.parts.mkdir(exist_ok=True)
            write_json(self.parts / MANIFEST, self.manifest())
        return self.done()

    def part_files(self):
        return sorted(self.parts.glob('part_*.h5'))

    def done(self):
        """Videos covered by the parts, which are consecutive from video 0."""
        end = 0
        for path in self.part_files():
            with h5py.File(path, 'r') as f:
                first, count = int(f.attrs['first']), int(f.attrs['count'])
            if first != end:
                raise UserError(f'{path} does not continue the parts before it; delete '
                                f'{self.parts} and extract again')
            end = first + count
        return end

    def save_part(self, first, results):
        """Write the results of videos first .. first + len(results) - 1 as one part:
        each a Clip, or the one-line reason it failed."""
        clips = {i: r for i, r in enumerate(results, first) if isinstance(r, Clip)}
        T = self.settings['segments']
        with atomic_path(self.parts / f'part_{first:07d}.h5') as tmp, h5py.File(tmp, 'x') as f:
            for key, tail in (('audio', (EMBEDDING_DIM,)), ('visual', MAP_SHAPE)):
                blocks = [getattr(c, key) for c in clips.values()]
                data = np.concatenate(blocks) if blocks else np.zeros((0, T, *tail), np.float32)
                f.create_dataset(key, data=self.cast(data, key, first))
            # Per row: its video's index and its window's number in that video.
            f['video'] = np.array([i for i, c in clips.items() for _ in c.audio], np.int64)
            f['window'] = np.array([w for c in clips.values() for w in range(len(c.audio))],
                                   np.int64)
            f['seconds'] = np.array([c.seconds for c in clips.values() for _ in c.audio])
            f.attrs['first'], f.attrs['count'] = first, len(results)
            f.attrs['failed'] = json.dumps([[i, r] for i, r in enumerate(results, first)
                                            if not isinstance(r, Clip)])

    def cast(self, data, key, first):
        out = data.astype(self.dtype)
        if not np.isfinite(out).all():
            raise UserError(f'{key} features of the videos from number {first} on are not '
                            f'finite in {np.dtype(self.dtype).name}; use --dtype float32')
        return out

    def failures(self):
        """[(video path, reason)] of every failed video in the parts."""
        failed = []
        for path in self.part_files():
            with h5py.File(path, 'r') as f:
                failed += [(self.videos[i], reason) for i, reason in json.loads(f.attrs['failed'])]
        return failed

    def finish(self, failures):
        """Assemble the final files from the parts; returns the number of rows. The folder's
        extraction.json keeps the videos, the settings and the `failures`."""
        parts = self.part_files()
        rows = []
        for path in parts:
            with h5py.File(path, 'r') as f:
                rows += zip(f['video'][()].tolist(), f['window'][()].tolist(),
                            f['seconds'][()].tolist())
        T = self.settings['segments']
        if rows:
            for name, key, tail in ((L.AUDIO_FILES[0], 'audio', (EMBEDDING_DIM,)),
                                    (L.VISUAL_FILE, 'visual', MAP_SHAPE)):
                write_h5_chunked(self.out / name, L.FEATURE_KEY, (len(rows), T, *tail),
                                 self.dtype, part_blocks(parts, key),
                                 {ORIGIN_ATTR: json.dumps(self.settings)})
            lines = [VIDEOS_HEADER] + [
                f'{r}\t{w * T}\t{min((w + 1) * T, round(seconds, 3)):g}\t{self.videos[i]}'
                for r, (i, w, seconds) in enumerate(rows)]
            write_text(self.out / VIDEOS_FILE, '\n'.join(lines) + '\n')
            write_json(self.out / MANIFEST, {**read_json(self.parts / MANIFEST),
                                             'failed': [list(f) for f in failures]})
        # Renamed first (atomic), so that a kill while deleting leaves no half set of parts
        # (the next run in the folder deletes the rest).
        done = self.out / (PARTS + '.done')
        os.replace(self.parts, done)
        shutil.rmtree(done)
        return len(rows)

    def release(self, created):
        """Unlock the folder. A finished folder keeps no lock file, and a folder this run
        `created` is removed again when it holds nothing (bad weights, every video failed,
        Ctrl-C before the first part)."""
        lock = getattr(self, 'lock', None)
        if lock is None:
            return
        if created and self.parts.is_dir() and not self.part_files():
            shutil.rmtree(self.parts)
        if not self.parts.is_dir():
            (self.out / LOCK).unlink(missing_ok=True)
        lock.close()   # closing the file releases the flock
        if created:
            with contextlib.suppress(OSError):   # not empty: it holds the features
                self.out.rmdir()


def difference(saved, wanted):
    """What tells manifest `saved` (of a folder) from `wanted` (asked now), in words."""
    if saved.get('videos') != wanted['videos']:
        return f"of {len(saved.get('videos') or [])} other videos"
    had = saved.get('settings') or {}
    for key, value in wanted['settings'].items():
        if had.get(key) != value:
            return f'made with {key} {had.get(key)!r}, asked {value!r}'
    return f"stored as {saved.get('dtype')}, asked {wanted['dtype']}"


def check_name(path):
    """videos.txt holds one tab-separated line per row: a file name with a line break, a
    tab or another control character cannot be recorded there, so such a video is refused."""
    if not str(path).isprintable():
        raise VideoError(f'{ascii(str(path))}: its name holds a line break, tab or other control '
                         'character, which videos.txt (one tab-separated line per row) cannot '
                         'record; rename the file')


def part_blocks(parts, key):
    """Dataset `key` of each part file in turn (one part in memory at a time)."""
    for path in parts:
        with h5py.File(path, 'r') as f:
            yield f[key][()]


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_videos_txt(path):
    """[(row, start_s, end_s, file)] of a videos.txt, or a UserError naming the line."""
    entries = []
    lines = Path(path).read_text().split('\n')
    lines = lines[:-1] if lines and not lines[-1] else lines
    if not lines or lines[0] != VIDEOS_HEADER:
        raise UserError(f'{path} is not a videos.txt written by extract_features.sh (its first '
                        f'line must be "{VIDEOS_HEADER}")')
    for number, line in enumerate(lines[1:], 2):
        fields = line.split('\t', 3)
        try:
            entries.append((int(fields[0]), int(fields[1]), float(fields[2]), fields[3]))
        except (ValueError, IndexError):
            raise UserError(f'{path} line {number} is not "row start_s end_s file"') from None
    return entries


def video_rows(folder):
    """Per video of data folder `folder` (its videos.txt), in extraction order: (file, its
    rows in window order, its length in seconds, its segment count). A video's windows are
    consecutive rows from second 0, so a file extracted twice is two videos."""
    videos = []
    for row, start, end, file in read_videos_txt(Path(folder) / VIDEOS_FILE):
        if start == 0 or not videos or videos[-1][0] != file:
            videos.append([file, [], end])
        videos[-1][1].append(row)
        videos[-1][2] = end
    return [(file, rows, seconds, segment_count(seconds)) for file, rows, seconds in videos]


def random_weights_warning(paths, what):
    """One warning line on stderr when the features in `paths` (feature files) were extracted
    with random weights; `what` names them in that line."""
    if any((feature_origin(p) or {}).get('weights') == 'random' for p in paths):
        print(f'warning: {what} extracted with random weights (--weights random): they are '
              'for trying the pipeline; training or predicting on them means nothing',
              file=sys.stderr)


def output_spec(settings):
    """The DataSpec of what an extraction with `settings` writes (classes unknown)."""
    return DataSpec(None, settings['segments'], EMBEDDING_DIM, MAP_SHAPE)


def feature_origin(path):
    """The extraction settings recorded in a feature file, or None (the release's files)."""
    try:
        with h5py.File(path, 'r') as f:
            text = f[L.FEATURE_KEY].attrs.get(ORIGIN_ATTR) if L.FEATURE_KEY in f else None
        origin = json.loads(text) if text else None
        return origin if isinstance(origin, dict) else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


# ----------------------------------------------------------------------------- the program's parts

VIDEO_SUFFIXES = ('.mp4', '.mkv', '.avi', '.mov', '.webm', '.flv', '.m4v', '.mpg', '.mpeg',
                  '.wmv', '.3gp', '.ogv', '.ts')
RANDOM_SEED = 0     # --weights random: the same random networks every run (resume needs it)


def add_flags(parser, segments=True):
    """The extraction flags (shared by extract_features.sh and predict.sh --video)."""
    parser.add_argument('--weights', choices=('pretrained', 'random'), default='pretrained',
                        help='random: both networks randomly initialised (seeded), for trying '
                             'the pipeline without weights; the files record it and predict '
                             'warns (default: pretrained)')
    parser.add_argument('--vgg19_weights', default='keras', metavar='keras|imagenet|PATH',
                        help="keras: Keras' VGG-19 ImageNet file, as the AVE release used "
                             '(downloaded to the torch hub cache on first use); imagenet: '
                             "torchvision's (not numerically the release's); or the path of "
                             'either file (default: keras)')
    parser.add_argument('--vggish_weights', default='download', metavar='download|PATH',
                        help='download: the PyTorch port of the VGGish weights, fetched to the '
                             'torch hub cache on first use; or the path of that .pth file '
                             '(default: download)')
    if segments:
        parser.add_argument('--segments', type=int, default=L.AVE.num_segments, metavar='T',
                            help='seconds per row: longer videos are cut into windows of T '
                                 f'seconds (default: {L.AVE.num_segments}, as AVE)')
    parser.add_argument('--frames_per_segment', type=int, default=16, metavar='F',
                        help='frames averaged in each second (default: 16, as AVE)')
    parser.add_argument('--frame_sampling', choices=SAMPLINGS, default='release',
                        help="which frames: release: the AVE release's frame grid (F frames "
                             'a second on the grid the frame count of each window sets); time: '
                             'the frames on screen at F evenly spaced instants of each second, '
                             'better for variable-frame-rate video (default: release)')
    parser.add_argument('--audio_framing', choices=logmel.FRAMINGS, default='release',
                        help="which sound makes segment s's 0.96 s audio example: release: "
                             'second s alone (resampled on its own), as the AVE release; vggish: '
                             "VGGish's stock framing, examples back to back every 0.96 s (drifts "
                             'up to 0.36 s from the picture) (default: release)')
    parser.add_argument('--frame_batch', type=int, default=32, metavar='N',
                        help='frames per VGG-19 step (default: 32)')


def check_flags(args):
    for flag in ('frames_per_segment', 'frame_batch', 'segments'):
        value = getattr(args, flag, 1)
        if value <= 0:
            raise UserError(f'--{flag} {value} is invalid: must be > 0')
    if args.weights == 'random':
        return
    for flag, names in (('vgg19_weights', "'keras', 'imagenet'"), ('vggish_weights', "'download'")):
        value = getattr(args, flag)
        if value not in names and not Path(value).is_file():
            raise UserError(f'--{flag} {value} not found; give {names} or the path of a '
                            'weights file')


def gather_videos(inputs):
    """Video paths from `inputs`: video files, folders (their video files, sorted by name)
    and list files (.txt: one path per line, relative to the list's folder; # comments)."""
    videos = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                raise UserError(f'{item} holds no video files ({", ".join(VIDEO_SUFFIXES)})')
            videos += found
        elif item.suffix.lower() == '.txt':
            try:
                lines = item.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f'{item}: cannot read this list of videos ({e})') from None
            videos += [item.parent / line.strip() for line in lines
                       if line.strip() and not line.lstrip().startswith('#')]
        else:
            videos.append(item)   # a missing or bad file fails on its own, not the run
    if not videos:
        raise UserError('no videos to extract: give video files, folders or .txt lists')
    return videos


def settings_of(args, T):
    """What the output files record of how they were made."""
    random = args.weights == 'random'
    return {'weights': args.weights, 'segments': T,
            'vgg19_weights': 'random' if random else str(args.vgg19_weights),
            'vggish_weights': 'random' if random else str(args.vggish_weights),
            'frames_per_segment': args.frames_per_segment,
            'frame_sampling': args.frame_sampling, 'resize': 'cv2.resize INTER_LINEAR',
            'audio': '16-bit PCM / 32768, channel mean, resampy kaiser_best',
            'audio_framing': args.audio_framing, 'sample_rate': logmel.SAMPLE_RATE}


def build_extractor(args, device, T):
    from features.vgg19 import build_vgg19
    from features.vggish import build_vggish
    random = args.weights == 'random'
    if random:
        torch.manual_seed(RANDOM_SEED)
    vggish = build_vggish('random' if random else args.vggish_weights)
    vgg19 = build_vgg19('random' if random else args.vgg19_weights)
    return Extractor(vgg19, vggish, device, T, args.frames_per_segment, args.frame_batch,
                     args.audio_framing, args.frame_sampling)


def extract_folder(videos, out, make_extractor, settings, dtype=np.float32, chunk=64,
                   progress=True, on_error=None):
    """Extract `videos` into the data folder `out`, continuing an interrupted run there.
    `make_extractor()` gives the Extractor (called only when there is work left). Parts are
    saved every `chunk` rows. Returns (rows written, [(video, reason) failed]);
    `on_error(line)` hears each failure as it happens."""
    store = Store(out, videos, settings, dtype)
    created = not store.out.exists()
    try:
        store.open()
        if store.finished():   # extracted before, the same way
            return (len(read_videos_txt(store.out / VIDEOS_FILE)),
                    [tuple(f) for f in read_json(store.out / MANIFEST).get('failed', [])])
        extractor = make_extractor()   # bad weights stop the run before any work
        return run(store, extractor, chunk, progress, on_error)
    finally:
        store.release(created)


def run(store, extractor, chunk, progress, on_error):
    """extract_folder's work, in the folder store.open() locked."""
    from tqdm import tqdm
    start, total = store.start(), len(store.videos)
    # A line on stderr between progress bars, not through one.
    on_error = on_error or (lambda line: tqdm.write(line, file=sys.stderr))
    results, rows = [], 0
    first = start
    bar = tqdm(total=total, initial=start, unit='video', desc='extract',
               disable=not progress, dynamic_ncols=True)
    with bar:
        for i in range(start, total):
            try:
                check_name(store.videos[i])
                clip = extractor(store.videos[i])
                rows += len(clip.audio)
                results.append(clip)
            except VideoError as e:
                results.append(str(e))
                on_error(f'error: {e}')
            bar.update()
            if rows >= chunk or i == total - 1:
                store.save_part(first, results)
                first, results, rows = i + 1, [], 0
    failures = store.failures()
    return store.finish(failures), failures


def stop_on_failures(failures, total, where):
    """List the failed videos on stderr and exit with status 2; nothing when none failed.
    `where`: what holds the others' results."""
    if not failures:
        return
    if len(failures) == total:   # each said why as it failed; there is nothing else to list
        raise UserError(f'none of the {total} videos could be used (each said why above)')
    print(f'{len(failures)} videos could not be used:', file=sys.stderr)
    for _, reason in failures:
        print(f'  {reason}', file=sys.stderr)
    stop(f'error: {len(failures)} of {total} videos failed (listed above); the others are in '
         f'{where}', EXIT_USER_ERROR)
