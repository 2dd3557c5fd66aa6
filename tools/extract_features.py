"""Extract the AVE release's features from video files into a data folder.

    python tools/extract_features.py VIDEO|FOLDER|LIST.txt [...] --out DIR
      [--weights pretrained|random] [--vgg19_weights keras|imagenet|PATH]
      [--vggish_weights download|PATH] [--segments 10] [--frames_per_segment 16]
      [--dtype float32|float16] [--chunk 64] [--device auto] [--no_progress]

Writes DIR/audio_feature.h5 (N, T, 128), DIR/visual_feature.h5 (N, T, 7, 7, 512), key
'avadataset', and DIR/videos.txt (row, start second, end second and file of each row),
usable as predict.sh --audio/--visual input as they are (docs/videos.md). A bad
video is one line naming it; the others are still extracted, the bad ones are listed at
the end and the exit status is 2. Interrupted, the same command continues the run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

from core.errors import UserError, exit_on_user_error  # noqa: E402
from dataset import layout as L  # noqa: E402
from features.extract import (add_flags, build_extractor, check_flags,  # noqa: E402
                              extract_folder, gather_videos, random_weights_warning, settings_of,
                              stop_on_failures)
from engine.config import Parser, program_name  # noqa: E402
from engine.device import resolve_device  # noqa: E402


def build_parser():
    parser = Parser(
        prog=program_name('tools/extract_features.py'),
        description="Extract VGGish audio and VGG-19 visual features from video files in the "
                    "AVE release's layout.",
        example='bash extract_features.sh my_videos/ --out my_data')
    parser.add_argument('inputs', nargs='+', metavar='VIDEO|FOLDER|LIST.txt',
                        help='video files, folders of videos, or .txt lists of video paths '
                             "(one per line, relative to the list's folder)")
    parser.add_argument('--out', required=True, metavar='DIR', help='the data folder to write')
    add_flags(parser)
    parser.add_argument('--dtype', choices=('float32', 'float16'), default='float32',
                        help='storage type of the features (default: float32)')
    parser.add_argument('--chunk', type=int, default=64, metavar='ROWS',
                        help='rows saved at a time: an interrupted run loses at most these '
                             '(default: 64)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (default: auto)')
    parser.add_argument('--no_progress', dest='progress', action='store_false',
                        help='no progress bar')
    return parser


@exit_on_user_error
def main(argv=None):
    """Run the command line; returns (rows written, failures)."""
    args = build_parser().parse_args(argv)
    check_flags(args)
    if args.chunk <= 0:
        raise UserError(f'--chunk {args.chunk} is invalid: must be > 0')
    videos = gather_videos(args.inputs)
    device = resolve_device(args.device)
    rows, failures = extract_folder(videos, args.out,
                                    lambda: build_extractor(args, device, args.segments),
                                    settings_of(args, args.segments), np.dtype(args.dtype),
                                    args.chunk, args.progress)
    if not rows:   # all failed
        stop_on_failures(failures, len(videos), args.out)
    done = len(videos) - len(failures)
    print(f'{done} of {len(videos)} videos, {rows} rows of {args.segments} s -> {args.out}')
    random_weights_warning([Path(args.out) / L.VISUAL_FILE], 'these features were')
    stop_on_failures(failures, len(videos), args.out)
    return rows, failures


if __name__ == '__main__':
    main()
