"""Measure feature extraction from video files (a benchmark, not a test).

    python tools/benchmark_extract.py [--videos 3] [--size 320x240] [--frames_per_segment 16]
                                      [--frame_sampling release|time] [--device auto]
                                      [--frame_batch 32] [--out FILE]

Writes `--videos` generated 10-second 25 fps MPEG-4/AAC videos to a temporary folder, then
extracts them as extract_features.sh does (random weights: the same networks and
arithmetic as pretrained ones, no download), one untimed warm-up video first. Reports
videos per second and where the time goes: decoding and resizing the frames, VGG-19 on
them, and the audio (resampling, log-mel and VGGish).
"""
import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from features import extract  # noqa: E402
from features.make_video import write_video  # noqa: E402
from features import video as video_module  # noqa: E402
from engine.device import resolve_device  # noqa: E402


def timed(totals, key, function, device):
    """`function` that adds its wall time (after the device finished) to totals[key]."""
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        result = function(*args, **kwargs)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        totals[key] += time.perf_counter() - began
        return result
    return wrapper


def main():
    parser = argparse.ArgumentParser(prog='python tools/benchmark_extract.py',
                                     description='Measure feature extraction from videos.')
    parser.add_argument('--videos', type=int, default=3)
    parser.add_argument('--size', default='320x240', help='WIDTHxHEIGHT of the videos')
    parser.add_argument('--frames_per_segment', type=int, default=16)
    parser.add_argument('--frame_sampling', choices=video_module.SAMPLINGS, default='release')
    parser.add_argument('--frame_batch', type=int, default=32)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--out', type=Path, help='write the results as JSON')
    args = parser.parse_args()
    width, height = map(int, args.size.split('x'))
    device = resolve_device(args.device)
    flags = argparse.Namespace(weights='random', vgg19_weights='keras', vggish_weights='download',
                               frames_per_segment=args.frames_per_segment, audio_framing='release',
                               frame_sampling=args.frame_sampling, frame_batch=args.frame_batch)
    extractor = extract.build_extractor(flags, device, 10)
    totals = {'vgg19': 0.0, 'audio': 0.0}
    extractor.visual = timed(totals, 'vgg19', extractor.visual, device)
    extract.embed = timed(totals, 'audio', extract.embed, device)
    extract.logmel.examples = timed(totals, 'audio', extract.logmel.examples, device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.videos + 1):
            paths.append(Path(tmp) / f'v{i}.mp4')
            write_video(paths[-1], 10, fps=25, size=(width, height), kind='mp4',
                        colors=[(20 * k, 120, 200 - 15 * k) for k in range(10)],
                        color_changes=range(1, 10), tone_hz=440.0 + 100 * i)
        extractor(paths[0])                         # warm-up, untimed
        totals.update(vgg19=0.0, audio=0.0)
        began = time.perf_counter()
        for path in paths[1:]:
            extractor(path)
        wall = time.perf_counter() - began
        # Decoding alone (frames converted and resized, sound read), no network.
        began = time.perf_counter()
        for path in paths[1:]:
            video_module.decode(path, args.frames_per_segment, 10, lambda window: None,
                                args.frame_sampling)
        decode = time.perf_counter() - began
    result = {
        'machine': {'cpu': platform.processor() or platform.machine(),
                    'threads': torch.get_num_threads(), 'device': str(device),
                    'gpu': torch.cuda.get_device_name(device) if device.type == 'cuda' else None},
        'videos': args.videos, 'size': args.size, 'fps': 25, 'seconds': 10,
        'frames_per_segment': args.frames_per_segment, 'frame_batch': args.frame_batch,
        'videos_per_s': round(args.videos / wall, 4), 's_per_video': round(wall / args.videos, 3),
        'share': {'vgg19': round(totals['vgg19'] / wall, 3),
                  'audio': round(totals['audio'] / wall, 3),
                  'decode_and_resize': round(decode / wall, 3)},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
