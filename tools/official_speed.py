"""Time the official DMIN release's training step and this repository's side by side, on
this machine (a benchmark, not a test).

    python tools/official_speed.py --official PATH/TO/DMIN/DIMN [--rounds 3] [--steps 5]
                                   [--batch 32] [--out FILE]

PATH is the `DIMN` folder of a checkout of the authors' code (github.com/weizequan/DMIN;
it is not part of this repository). Both sides train the fully-supervised DMIN on the same
batch of random AVE-shaped inputs (visual maps and audio >= 0, 7 event segments of one
class per video), each as its own training script does:

- official: its `supv_main_model`, float64 (its `supv_main.py` calls `model.double()`),
  its three losses (BCE + 0.9 CE + 0.1 CE), gradient clipping to 0.1 and Adam at 5e-4, as
  its `supv_train.sh`; its `.cuda()` calls are made no-ops so that it runs on the CPU;
- this repository: `engine.loop.train_step` with the default supervised config (float32,
  freed memory kept for reuse as training does, engine/memory.py).

Each side runs in a fresh process per round, the two in turn; a round reports the median
and the best of `--steps` steps after 2 warm-up steps. The summary is the median over the
rounds of each side's median, and the ratio of the two.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dataset.layout import AVE  # noqa: E402  (the release's model is built for AVE's sizes)


def random_batch(batch, dtype):
    """AVE-shaped inputs and one-hot segment labels (B, T, C + 1), the last column background:
    the first 3 segments background, the rest of the video's class."""
    T, C = AVE.num_segments, AVE.num_classes
    g = torch.Generator().manual_seed(0)
    visual = torch.rand(batch, T, *AVE.visual_shape, generator=g).to(dtype)
    audio = torch.rand(batch, T, AVE.audio_dim, generator=g).to(dtype)
    video_class = torch.arange(batch) % C
    labels = torch.zeros(batch, T, C + 1, dtype=dtype)
    labels[:, :3, C] = 1
    labels[:, 3:, :].scatter_(2, video_class.view(-1, 1, 1).expand(batch, T - 3, 1), 1)
    return visual, audio, labels


def official_step(official, batch):
    """A closure running one training step of the official code, as its supv_main.py does."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self      # no GPU: run where it is
    nn.Module.cuda = lambda self, *args, **kwargs: self
    # The release's packages (model, dataset, utils) share names with this repository's:
    # import them from its folder alone.
    sys.path[:] = [str(official)] + [p for p in sys.path if Path(p or '.').resolve() != REPO]
    for name in [n for n in sys.modules if n.split('.')[0] in ('model', 'dataset', 'utils')]:
        del sys.modules[name]
    from model.supv_main_model import supv_main_model
    torch.manual_seed(0)
    model = supv_main_model().double().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
    visual, audio, labels = random_batch(batch, torch.float64)
    foreground = labels[:, :, :-1]
    is_event, segment_class = foreground.max(-1)
    video_class, _ = segment_class.max(-1)

    def step():
        event, category, category_self = model(visual, audio)
        event = event.transpose(1, 0).squeeze().contiguous()
        loss = (bce(event, is_event) + 0.9 * ce(category, video_class)
                + 0.1 * ce(category_self, video_class))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        optimizer.zero_grad()
    return step


def our_step(batch):
    """A closure running one training step of this repository's supervised DMIN."""
    from engine.config import default_config
    from engine.loop import build_optimizer, train_step
    from engine.memory import reuse_freed_memory
    from model import build_criterion, build_model, model_args
    cfg = default_config('supervised')[0]
    torch.manual_seed(0)
    model = build_model(model_args('supervised', AVE, cfg)).train()
    criterion = build_criterion(cfg, 'supervised', AVE.num_classes)
    optimizer, _ = build_optimizer(model, cfg, torch.device('cpu'))
    visual, audio, labels = random_batch(batch, torch.float32)
    targets = {'segment': labels.argmax(-1),                        # (B, T), C: background
               'video_class': torch.arange(batch) % AVE.num_classes,
               'video_label': labels.amax(1)}                        # (B, C + 1)
    reuse_freed_memory()
    return lambda: train_step(model, criterion, optimizer, audio, visual, targets, cfg)


def time_side(args):
    """In this process: seconds of each of the side's steps after 2 warm-up steps."""
    step = official_step(args.official, args.batch) if args.side == 'official' else our_step(args.batch)
    seconds = []
    for i in range(args.steps + 2):
        began = time.perf_counter()
        step()
        if i >= 2:
            seconds.append(time.perf_counter() - began)
    print(json.dumps(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--official', type=Path, required=True,
                        help="the DIMN folder of a checkout of github.com/weizequan/DMIN")
    parser.add_argument('--rounds', type=int, default=3, help='fresh processes per side (3)')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per round (5)')
    parser.add_argument('--batch', type=int, default=32, help='videos per step (32)')
    parser.add_argument('--out', type=Path, help='also write the figures as JSON here')
    parser.add_argument('--side', choices=('official', 'ours'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.official / 'model' / 'supv_main_model.py').is_file():
        parser.error(f'--official {args.official}: no model/supv_main_model.py there; give the '
                     'DIMN folder of a checkout of github.com/weizequan/DMIN')
    if min(args.rounds, args.steps, args.batch) < 1:
        parser.error('--rounds, --steps and --batch must be at least 1')
    if args.side:
        return time_side(args)
    rounds = {'official': [], 'ours': []}
    for r in range(args.rounds):
        for side in rounds:
            command = [sys.executable, __file__, '--side', side, '--official', str(args.official),
                       '--steps', str(args.steps), '--batch', str(args.batch)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f'official_speed: the {side} side failed:\n{done.stderr.strip()}')
            seconds = json.loads(done.stdout.strip().splitlines()[-1])
            rounds[side].append({'median_s': statistics.median(seconds), 'best_s': min(seconds)})
            print(f'round {r + 1} {side:8s}: {args.batch / rounds[side][-1]["median_s"]:7.2f} '
                  f'videos/s (median step {rounds[side][-1]["median_s"]:.3f} s, best '
                  f'{args.batch / rounds[side][-1]["best_s"]:.2f} videos/s)', flush=True)
    summary = {side: args.batch / statistics.median(r['median_s'] for r in rows)
               for side, rows in rounds.items()}
    ratio = summary['ours'] / summary['official']
    print(f'training videos/s, median over rounds: official {summary["official"]:.2f}, '
          f'this repository {summary["ours"]:.2f}: {ratio:.2f}x')
    if args.out:
        args.out.write_text(json.dumps({'batch': args.batch, 'rounds': rounds,
                                        'videos_per_s': summary, 'ratio': ratio}, indent=2))


if __name__ == '__main__':
    main()
