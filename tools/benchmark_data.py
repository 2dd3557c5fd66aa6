"""Measure streaming against in-memory data, big-set epochs and torchrun (a benchmark, not a test).

    python tools/benchmark_data.py compare --data DIR [--steps 40] [--workers 2] [--out FILE]
    python tools/benchmark_data.py epoch --data DIR [--workers 2] [--out FILE] [-- flags...]
    python tools/benchmark_data.py ranks --data DIR [--nproc 1 2] [--out FILE] [-- flags...]

compare   trains the default supervised DMIN for --steps batches of 32 with the features in
          memory, then streamed from the files (each in a fresh process), and reads the
          training split once through the streaming path without training (its disk-read
          rate); reports videos/s, load time and the peak memory of each.
epoch     one training epoch of supv_main.py with --data_in_memory false: its time and the
          peak memory of the process and its DataLoader workers together.
ranks     one epoch of supv_main.py on each process count of --nproc (torchrun with gloo on
          the CPU, the same global batch): time per epoch and loss.

Peak memory is sampled every 0.2 s over the process tree: the sum of the processes' RSS,
and the sum of their PSS (which counts the pages a forked worker shares with its parent
once). Run it on an idle machine; nothing here is a test.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- memory

def process_tree(pid):
    """`pid` and all its descendants."""
    children = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def memory_of(pids):
    """(sum of RSS, sum of PSS) in bytes of processes `pids`."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines():
                if line.startswith('Rss:'):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith('Pss:'):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def run_measured(cmd, env=None):
    """Run `cmd`; returns its stdout, wall seconds and peak summed RSS / PSS of its tree."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            rss, pss = memory_of(process_tree(proc.pid))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f'{cmd[:4]}... failed with exit status {proc.returncode}:\n{out[-2000:]}')
    return out, time.perf_counter() - began, {'peak_rss_bytes': peak[0], 'peak_pss_bytes': peak[1]}


# ----------------------------------------------------------------------------- compare

MODES = ('memory', 'stream', 'read_warm', 'read_cold')

def child(args):
    """In a fresh process: load the data one way, then train --steps batches (or only read
    them); prints one JSON line."""
    import torch
    from dataset.ave import load_ave
    from engine.config import default_config
    from engine.device import keep_freed_memory
    from engine.loop import train_step
    from engine.memory import release_freed_memory
    from model import build_criterion, build_model, model_args

    cfg = default_config('supervised')[0]
    torch.manual_seed(0)
    began = time.perf_counter()
    data = load_ave(args.data, ('train', 'val', 'test'), 'supervised', background=False,
                    progress=False, in_memory=args.child == 'memory', workers=args.workers,
                    prefetch=2)
    load_seconds = time.perf_counter() - began
    keep_freed_memory(cfg, torch.device('cpu'))      # as training does, and so the workers:
    data.worker_init = release_freed_memory

    rows = data.splits['train'][torch.randperm(data.num_videos('train'),
                                               generator=torch.Generator().manual_seed(0))]
    batches = list(rows.split(32))
    if args.child == 'read':
        began = time.perf_counter()
        for _ in data.batches(batches):
            pass
        seconds = time.perf_counter() - began
        with torch.no_grad():
            row_bytes = sum(data.reader.datasets()[k].dtype.itemsize *
                            int(torch.tensor(data.reader.datasets()[k].shape[1:]).prod())
                            for k in ('audio', 'visual'))
        print(json.dumps({'videos': len(rows), 'seconds': seconds,
                          'videos_per_s': len(rows) / seconds,
                          'file_bytes_per_s': len(rows) * row_bytes / seconds}))
        return
    model = build_model(model_args('supervised', data.spec, cfg))
    criterion = build_criterion(cfg, 'supervised', data.spec.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    model.train()
    timed = None
    for step, (batch_rows, audio, visual) in enumerate(data.batches(batches[:args.steps + 1])):
        if step == 1:                   # the first step warms up (allocations, workers)
            timed = time.perf_counter()
        train_step(model, criterion, optimizer, audio, visual, data.targets(batch_rows), cfg)
    seconds = time.perf_counter() - timed
    print(json.dumps({'load_seconds': load_seconds, 'steps': args.steps, 'seconds': seconds,
                      'videos_per_s': args.steps * 32 / seconds}))


def drop_page_cache():
    """Empty the kernel's page cache (root on Linux only); False where not allowed."""
    try:
        os.sync()
        Path('/proc/sys/vm/drop_caches').write_text('3\n')
        return True
    except OSError:
        return False


def compare(args):
    results = {}
    # The page cache is warm for the training runs (the in-memory load reads every file
    # first), then, where allowed, emptied for a second read-only pass (cold).
    for name, mode in (('memory', 'memory'), ('stream', 'stream'), ('read_warm', 'read'),
                       ('read_cold', 'read')):
        if name not in args.modes or name == 'read_cold' and not drop_page_cache():
            continue
        out, wall, memory = run_measured([sys.executable, __file__, 'compare', '--data',
                                          str(args.data), '--child', mode, '--steps',
                                          str(args.steps), '--workers', str(args.workers)])
        results[name] = {**json.loads(out.strip().splitlines()[-1]), **memory, 'wall_s': wall}
        print(name, json.dumps(results[name]), flush=True)
    if 'memory' in results and 'stream' in results:
        results['stream_speed_fraction'] = (results['stream']['videos_per_s'] /
                                            results['memory']['videos_per_s'])
    return results


# ----------------------------------------------------------------------------- epoch, ranks

def program_epoch(args, nproc, in_memory, run):
    """One epoch of supv_main.py (through torchrun when nproc > 1), the machine's cores
    shared among the processes (--threads each by default); metrics.json's first epoch and
    the measured wall time and memory."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // nproc)
    launch = ([sys.executable, str(REPO / 'tools' / 'torchrun.py'), str(nproc)] if nproc > 1
              else [sys.executable])
    cmd = [*launch, str(REPO / 'supv_main.py'), '--data_root', str(args.data), '--n_epoch', '1',
           '--snapshot_pref', str(run), '--data_in_memory', in_memory, '--num_workers',
           str(args.workers), '--tb_images_every', '0', '--no_progress', '--num_threads',
           str(threads), *args.flags]
    out, wall, memory = run_measured(cmd, env={'OMP_NUM_THREADS': str(threads)})
    record = json.loads((run / 'metrics.json').read_text())['history'][0]
    return {'nproc': nproc, 'threads_per_process': threads,
            'train_seconds': record['train_seconds'],
            'epoch_seconds': record['seconds'], 'loss': record['train']['loss'],
            'val_accuracy': record['val_accuracy'], 'wall_s': wall, **memory,
            'log': [line for line in out.splitlines() if line.startswith(('features', 'supervised'))]}


def epoch(args):
    with tempfile.TemporaryDirectory() as tmp:
        result = program_epoch(args, 1, 'false', Path(tmp) / 'run')
    print(json.dumps(result), flush=True)
    return result


def ranks(args):
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in args.nproc:
            results.append(program_epoch(args, nproc, 'true', Path(tmp) / f'run{nproc}'))
            print(json.dumps(results[-1]), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(prog='python tools/benchmark_data.py', description=(
        'Measure streaming against in-memory data, big-set epochs and torchrun.'))
    parser.add_argument('what', choices=('compare', 'epoch', 'ranks'))
    parser.add_argument('--data', type=Path, required=True, help='a folder in the AVE layout')
    parser.add_argument('--steps', type=int, default=40, help='compare: timed training steps')
    parser.add_argument('--modes', nargs='+', default=MODES, choices=MODES,
                        help='compare: what to measure (default: all)')
    parser.add_argument('--workers', type=int, default=2, help='streaming DataLoader workers')
    parser.add_argument('--nproc', type=int, nargs='+', default=[1, 2],
                        help='ranks: process counts')
    parser.add_argument('--threads', type=int, default=0,
                        help='epoch/ranks: threads of each process (default: the cores '
                             'shared among the processes)')
    parser.add_argument('--out', type=Path, help='write the results as JSON')
    parser.add_argument('--child', choices=('memory', 'stream', 'read'), help=argparse.SUPPRESS)
    # argparse would bind an empty 'flags' to the first positional and then refuse what
    # follows '--', so the flags for supv_main.py are split off here.
    argv = sys.argv[1:]
    cut = argv.index('--') if '--' in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.flags = argv[cut + 1:]
    if args.child:
        return child(args)
    results = {'compare': compare, 'epoch': epoch, 'ranks': ranks}[args.what](args)
    doc = {'machine': {'cpu': platform.processor() or platform.machine(),
                       'cores': os.cpu_count()}, args.what: results}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + '\n')
        print(f'-> {args.out}')


if __name__ == '__main__':
    main()
