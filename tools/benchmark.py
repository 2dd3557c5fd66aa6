"""Measure the methods' speed and memory on this machine (a benchmark, not a test).

    python tools/benchmark.py [--models dmin avel ...] [--device cpu cuda] [--amp none bf16]
                              [--data DIR] [--profile] [--out FILE]

For each device (CPU, and CUDA when present) it measures:
  - the matrix-multiply peak in float32 and bfloat16 (the reference);
  - training throughput (videos/s: forward + backward + optimizer step) of each method
    (--models; default DMIN) in both settings, each with its recipe's model and the same
    batch, and the achieved FLOP/s as a fraction of the matmul peak of the precision used;
  - evaluation throughput;
with freed memory kept for reuse as training does (engine/memory.py; --no_reuse_memory: not),
with --profile, where a training step's time and FLOPs go, part by part (each module's
forward, the losses, the backward pass, the optimizer step), and, with --data (a folder
in the AVE layout, e.g. a full-size float64 synthetic set made
with `python -m dataset.synthetic --out DIR --float64`), the time and peak resident memory
of loading it with float32 and float16 storage. It prints a table and writes JSON.
FLOPs are counted once: matmuls with torch.utils.flop_counter, plus the LSTMs (which the
counter does not see) analytically, from the shapes they are called with.
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataset.layout import AVE  # noqa: E402  (the benchmark's batches are AVE-sized)
from engine.config import METHODS, default_config  # noqa: E402
from engine.loop import autocast, train_step  # noqa: E402
from engine.memory import reuse_freed_memory  # noqa: E402
from model import build_criterion, build_model, model_args  # noqa: E402
from model.bilstm import AudioGuidedBiLSTM, splits  # noqa: E402
from model.criterion import total_loss  # noqa: E402

PRECISION = {'none': torch.float32, 'bf16': torch.bfloat16}


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeats, warmup=1):
    """Median seconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def matmul_peak(device, dtype, quick):
    """Best FLOP/s of square matrix products over a few sizes."""
    sizes = [512] if quick else ([2048, 4096] if device.type == 'cpu' else [4096, 8192])
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timed(lambda: a @ b, device, repeats=3 if quick else 10, warmup=2)
        best = max(best, 2 * n ** 3 / seconds)
    return best


def lstm_flops(model, run, by_module=False):
    """Forward FLOPs of the layers of every nn.LSTM of `model` that torch's LSTM ran during
    run() (flop_counter does not count them; AGTA's BiLSTM computes its first layer itself
    on the CPU, model/bilstm.py, and those products are counted): per layer, direction and
    step, 4 gates of h x (input + h) multiply-adds. The total, or with `by_module` {module
    name: FLOPs}."""
    names = {m: n for n, m in model.named_modules()}
    calls = []

    def seen(m, inputs, out):
        first = 1 if isinstance(m, AudioGuidedBiLSTM) and splits(inputs[0]) else 0
        calls.append((m, inputs[0].shape[:-1].numel(), range(first, m.num_layers)))

    hooks = [m.register_forward_hook(seen) for m in model.modules()
             if isinstance(m, torch.nn.LSTM)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    found = {}
    for lstm, steps, layers in calls:
        h, directions = lstm.hidden_size, 2 if lstm.bidirectional else 1
        for layer in layers:
            inputs = lstm.input_size if layer == 0 else h * directions
            found[names[lstm]] = (found.get(names[lstm], 0)
                                  + 2 * 4 * h * (inputs + h) * directions * steps)
    return found if by_module else sum(found.values())


def model_flops(cfg, setting):
    """(forward, training) FLOPs per video of the model of `cfg`."""
    model = build_model(model_args(setting, AVE, cfg))
    criterion = build_criterion(cfg, setting, AVE.num_classes)
    audio, visual, targets = fake_batch(2, torch.device('cpu'))
    with FlopCounterMode(display=False) as forward:
        lstm = lstm_flops(model, lambda: model(audio, visual))
    with FlopCounterMode(display=False) as train:
        outputs = model(audio, visual)
        total_loss(criterion(outputs, targets), criterion.weight_dict).backward()
    # The LSTM's backward computes input and weight gradients: twice its forward.
    return (forward.get_total_flops() + lstm) / 2, (train.get_total_flops() + 3 * lstm) / 2


def fake_batch(batch, device):
    """Random AVE-shaped inputs and targets (features >= 0 like VGG outputs)."""
    T, C = AVE.num_segments, AVE.num_classes
    audio = torch.rand(batch, T, AVE.audio_dim, device=device)
    visual = torch.rand(batch, T, *AVE.visual_shape, device=device)
    video_class = torch.arange(batch, device=device) % C
    segment = video_class[:, None].repeat(1, T)
    segment[:, :3] = C                                             # background
    label = torch.nn.functional.one_hot(video_class, C + 1).float()
    return audio, visual, {'segment': segment, 'video_class': video_class, 'video_label': label}


def throughput(cfg, setting, device, amp, batch, steps, train):
    """Videos per second of training steps (or evaluation forwards) on random inputs."""
    torch.manual_seed(0)
    model = build_model(model_args(setting, AVE, cfg)).to(device)
    criterion = build_criterion(cfg, setting, AVE.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    audio, visual, targets = fake_batch(batch, device)
    run_cfg = dict(cfg, amp=amp)

    def step():   # the training loop's own step
        train_step(model, criterion, optimizer, audio, visual, targets, run_cfg)

    @torch.no_grad()
    def forward():
        with autocast(device, run_cfg['amp']):
            model.predict(model(audio, visual))

    model.train(train)
    seconds = timed(step if train else forward, device, repeats=steps, warmup=2)
    return batch / seconds


PROFILE_DEPTH = 3   # parts: the model's children, theirs and theirs (DMIN: agta.temporal.lstm)


def profile(cfg, setting, device, batch, steps):
    """Where one training step of batch `batch` goes: [{part, ms, gflop_per_video}, ...] for
    the forward of each module down to PROFILE_DEPTH levels (inclusive of its children; a
    module called twice counts both calls), then 'forward' (all of it), 'losses',
    'backward', 'optimizer' and 'step'; medians over `steps` steps after 2. FLOPs: forward
    FLOPs per video of each module (flop_counter, plus the LSTMs); backward: the training
    step's FLOPs less the forward's."""
    torch.manual_seed(0)
    model = build_model(model_args(setting, AVE, cfg)).to(device)
    criterion = build_criterion(cfg, setting, AVE.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    audio, visual, targets = fake_batch(batch, device)
    model.train()
    parts = [(n, m) for n, m in model.named_modules() if n and n.count('.') < PROFILE_DEPTH]
    spent, began = {}, {}

    def before(name):
        def hook(module, inputs):
            synchronize(device)
            began[name] = time.perf_counter()
        return hook

    def after(name):
        def hook(module, inputs, output):
            synchronize(device)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - began[name]
        return hook

    hooks = [h for n, m in parts for h in (m.register_forward_pre_hook(before(n)),
                                           m.register_forward_hook(after(n)))]
    rows = {}
    try:
        for i in range(steps + 2):
            spent.clear()
            marks = [time.perf_counter()]
            outputs = model(audio, visual)
            synchronize(device)
            marks.append(time.perf_counter())
            loss = total_loss(criterion(outputs, targets), criterion.weight_dict)
            synchronize(device)
            marks.append(time.perf_counter())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            synchronize(device)
            marks.append(time.perf_counter())
            optimizer.step()
            synchronize(device)
            marks.append(time.perf_counter())
            if i < 2:
                continue
            phases = {'forward': marks[1] - marks[0], 'losses': marks[2] - marks[1],
                      'backward': marks[3] - marks[2], 'optimizer': marks[4] - marks[3],
                      'step': marks[4] - marks[0]}
            for name, seconds in [*spent.items(), *phases.items()]:
                rows.setdefault(name, []).append(seconds)
    finally:
        for hook in hooks:
            hook.remove()
    flops = part_flops(cfg, setting)
    forward, train = model_flops(cfg, setting)
    flops.update(forward=forward, backward=train - forward, step=train)
    order = [n for n, _ in parts if n in rows] + ['forward', 'losses', 'backward',
                                                  'optimizer', 'step']
    return [{'part': n, 'ms': 1000 * statistics.median(rows[n]),
             'gflop_per_video': flops.get(n, 0.0) / 1e9} for n in order]


def part_flops(cfg, setting):
    """{module name: forward FLOPs per video} of the model of `cfg`, LSTMs included."""
    model = build_model(model_args(setting, AVE, cfg))
    audio, visual, _ = fake_batch(2, torch.device('cpu'))
    root = type(model).__name__
    with FlopCounterMode(display=False, depth=PROFILE_DEPTH + 1) as counter:
        lstm = lstm_flops(model, lambda: model(audio, visual), by_module=True)
    found = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(root + '.'):
            found[key[len(root) + 1:]] = sum(ops.values()) / 2
    for name, value in lstm.items():   # the LSTM and every module above it
        parts = name.split('.')
        for n in range(1, len(parts) + 1):
            prefix = '.'.join(parts[:n])
            found[prefix] = found.get(prefix, 0) + value / 2
    return found


def profile_table(rows, title):
    step = next(r['ms'] for r in rows if r['part'] == 'step')
    lines = [f'\n{title}: where a training step goes (forward of each part includes its '
             'children)',
             f"{'part':<36}{'ms':>9}{'of step':>9}{'GFLOP/video':>13}"]
    for r in rows:
        depth = r['part'].count('.') if r['part'] not in ('forward', 'losses', 'backward',
                                                          'optimizer', 'step') else 0
        if r['ms'] < 0.005 * step and r['gflop_per_video'] < 0.005:
            continue   # below half a percent: not a part worth a row
        lines.append(f"{'  ' * depth + r['part']:<36}{r['ms']:>9.1f}{r['ms'] / step:>9.1%}"
                     f"{r['gflop_per_video']:>13.3f}")
    return '\n'.join(lines)


def load_memory(data, dtype):
    """Load time, peak RSS and RSS per video of load_ave(data) in a fresh process."""
    code = f'''
import json, resource, sys, time, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from dataset.ave import load_ave
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024
before = rss()
began = time.perf_counter()
data = load_ave({str(data)!r}, setting='weak', feature_dtype=torch.{dtype}, progress=False)
seconds = time.perf_counter() - began
videos = len(data.audio)
print(json.dumps({{'seconds': seconds, 'videos': videos,
                  'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  'bytes_per_video': (rss() - before) / videos}}))
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=['dmin'], choices=METHODS, metavar='M',
                        help=f"methods to measure (default dmin; any of {' '.join(METHODS)})")
    parser.add_argument('--device', nargs='*', default=['cpu', 'cuda'],
                        help='devices to measure; cuda is skipped where absent (default: both; '
                             'none: only --data loading)')
    parser.add_argument('--amp', nargs='+', default=['none', 'bf16'], choices=list(PRECISION),
                        help='precisions of the training measurements (default: both)')
    parser.add_argument('--batch_size', type=int, default=32, help='training batch (default 32)')
    parser.add_argument('--eval_batch_size', type=int, default=16, help='evaluation batch (16)')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per measurement (5)')
    parser.add_argument('--data', type=Path, help='AVE-layout folder whose loading to measure')
    parser.add_argument('--out', type=Path, default=Path('benchmark.json'),
                        help='JSON file to write (default benchmark.json)')
    parser.add_argument('--profile', action='store_true',
                        help="also time a training step part by part (each module's forward, the "
                             'losses, backward, the optimizer) beside its FLOPs')
    parser.add_argument('--no_reuse_memory', action='store_true',
                        help="keep glibc's default of unmapping large freed blocks (training's "
                             '--no_reuse_memory); by default freed memory is reused, as in training')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, to check that the script runs (numbers meaningless)')
    args = parser.parse_args(argv)

    results = {'machine': {'python': platform.python_version(), 'torch': torch.__version__,
                           'cpu': platform.processor() or platform.machine(),
                           'threads': torch.get_num_threads(),
                           'reuse_memory': not args.no_reuse_memory and reuse_freed_memory()},
               'devices': {}}
    configs = {f'{m}/{s}': (s, default_config(s, m)[0]) for m in args.models
               for s in ('supervised', 'weak')}
    if args.quick:
        small = dict(d_model=32, n_heads=4, ff_dim=64, decoder_ff_dim=64, encoder_layers=1,
                     agta_hidden=32, mfb_factor=2, lstm_hidden=16, attention_hidden=32,
                     audio_lstm_hidden=16, visual_lstm_hidden=16)
        configs = {k: (s, {**c, **{key: v for key, v in small.items() if key in c}})
                   for k, (s, c) in configs.items()}
        args.batch_size, args.eval_batch_size, args.steps = 2, 2, 1
    flops = {k: model_flops(c, s) for k, (s, c) in configs.items()}
    results['flops_per_video'] = {k: {'forward': f, 'train': t} for k, (f, t) in flops.items()}

    for name in args.device:
        if name == 'cuda' and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        entry = results['devices'][name] = {}
        if name == 'cuda':
            entry['name'] = torch.cuda.get_device_name(device)
        entry['matmul_peak'] = {amp: matmul_peak(device, PRECISION[amp], args.quick)
                                for amp in args.amp}
        for key, (setting, cfg) in configs.items():
            for amp in args.amp:
                train = throughput(cfg, setting, device, amp, args.batch_size, args.steps, True)
                evaluate = throughput(cfg, setting, device, amp, args.eval_batch_size,
                                      args.steps, False)
                achieved = train * flops[key][1]
                entry[f'{key}/{amp}'] = {
                    'train_videos_per_s': train, 'eval_videos_per_s': evaluate,
                    'train_flops_per_s': achieved,
                    'fraction_of_matmul_peak': achieved / entry['matmul_peak'][amp]}
            if args.profile:
                entry.setdefault('profile', {})[key] = profile(cfg, setting, device,
                                                               args.batch_size, args.steps)
    if args.data:
        results['load'] = {dtype: load_memory(args.data, dtype) for dtype in ('float32', 'float16')}

    args.out.write_text(json.dumps(results, indent=1))
    print(table(results, args))
    print(f'written: {args.out}')
    return results


def table(results, args):
    lines = [f"{key}: forward {f['forward'] / 1e9:.2f} GFLOP/video, training (fwd+bwd) "
             f"{f['train'] / 1e9:.2f}" for key, f in results['flops_per_video'].items()]
    for name, entry in results['devices'].items():
        peaks = ', '.join(f"{'fp32' if a == 'none' else a} {p / 1e12:.3f} TFLOP/s"
                          for a, p in entry['matmul_peak'].items())
        lines.append(f"\n{name} {entry.get('name', results['machine']['cpu'])}: matmul peak {peaks}")
        lines.append(f"{'method/setting/amp':<24}{'train videos/s':>15}{'eval videos/s':>15}"
                     f"{'TFLOP/s':>10}{'of peak':>9}")
        for key, row in entry.items():
            if '/' in key:
                lines.append(f"{key:<24}{row['train_videos_per_s']:>15.1f}{row['eval_videos_per_s']:>15.1f}"
                             f"{row['train_flops_per_s'] / 1e12:>10.3f}{row['fraction_of_matmul_peak']:>9.0%}")
        for key, rows in entry.get('profile', {}).items():
            lines.append(profile_table(rows, f'{name} {key} (float32, batch {args.batch_size})'))
    for dtype, row in results.get('load', {}).items():
        lines.append(f"load {args.data} as {dtype}: {row['seconds']:.1f} s, peak RSS "
                     f"{row['peak_rss_bytes'] / 2**30:.2f} GiB, {row['bytes_per_video'] / 2**20:.2f} MiB/video")
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
