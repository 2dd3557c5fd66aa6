"""Train one setting once per seed and tabulate val/test accuracy as mean +- std.

    python tools/multiseed.py --setting supervised --seeds 1 2 3 --snapshot_pref runs/seeds \\
                              [--overwrite] [any flag of supv_main.py / weak_main.py]

Seed s trains in <snapshot_pref>/seed_<s> with --seed s (the normal training run, with
its checkpoints, metrics.json and report); after each seed, <snapshot_pref>/seeds.md and
seeds.json hold every finished seed's best epoch and its val and test accuracy, with their
mean, sample standard deviation and count. Seed folders that already hold a run are
refused before anything trains, unless --overwrite is given (it is passed to every run).
"""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.atomic import write_json, write_text  # noqa: E402
from core.errors import UserError, exit_on_user_error  # noqa: E402
from main import main as run_main  # noqa: E402
from engine.config import SCRIPTS, Parser, parse_config, program_name  # noqa: E402
from engine.run_dir import holds_run  # noqa: E402

# Flags that multiseed sets itself for every run, or that do not train.
OWN_FLAGS = ('--seed', '--snapshot_pref', '--resume', '--evaluate', '--report')


def build_parser():
    parser = Parser(
        prog=program_name('tools/multiseed.py'),
        description='Train a setting once per seed; write seeds.md and seeds.json with each '
                    "seed's val/test accuracy and their mean +- std.",
        epilog='Every other flag (e.g. --data_root, --n_epoch) is passed to each training run; '
               'see python supv_main.py --help or python weak_main.py --help.',
        example='bash multiseed.sh --setting supervised --seeds 1 2 3 --data_root data')
    parser.add_argument('--setting', required=True, choices=tuple(SCRIPTS))
    parser.add_argument('--seeds', required=True, nargs='+', type=int, metavar='S',
                        help='the seeds, e.g. --seeds 1 2 3')
    parser.add_argument('--snapshot_pref', metavar='DIR',
                        help='folder of the seed runs and the table (default: runs/seeds_<setting>)')
    parser.add_argument('--overwrite', action='store_true',
                        help='retrain seeds whose folder already holds a run')
    return parser


def parse_args(argv):
    args, passed = build_parser().parse_known_args(argv)
    own = [a for a in passed if a.split('=')[0] in OWN_FLAGS]
    if own:
        raise UserError(f'{own[0]} cannot be passed through tools/multiseed.py: it sets --seed '
                        'and --snapshot_pref of each run itself and only trains')
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed; each seed "
                        'trains once')
    args.snapshot_pref = Path(args.snapshot_pref or f'runs/seeds_{args.setting}')
    return args, passed


def seed_argv(args, passed, seed):
    """The training command line of one seed."""
    argv = [*passed, '--seed', str(seed), '--snapshot_pref', str(args.snapshot_pref / f'seed_{seed}')]
    return argv + ['--overwrite'] if args.overwrite else argv


def summarize(values):
    """{mean, std (sample, None below 2 values), n} of the numbers in `values`."""
    values = [v for v in values if v is not None]
    return {'mean': statistics.fmean(values) if values else None,
            'std': statistics.stdev(values) if len(values) > 1 else None, 'n': len(values)}


def table(setting, select_on, runs):
    """The JSON document of finished seed runs."""
    return {'setting': setting, 'select_on': select_on, 'runs': runs,
            'val_accuracy': summarize([r['val_accuracy'] for r in runs]),
            'test_accuracy': summarize([r['test_accuracy'] for r in runs])}


def _fmt(value, digits=3):
    return 'n/a' if value is None else f'{value:.{digits}f}'


def _mean_std(stats):
    if stats['mean'] is None:
        return 'n/a'
    std = 'n/a' if stats['std'] is None else f"{stats['std']:.2f}"
    return f"{stats['mean']:.2f} ± {std}"


def table_markdown(doc):
    lines = [f"# {doc['setting']} DMIN over {len(doc['runs'])} seeds", '',
             f"Segment accuracy (%) at each run's best epoch, selected on {doc['select_on']}; "
             'mean ± sample standard deviation over the seeds.', '',
             '| seed | best epoch | val accuracy | test accuracy | run folder |',
             '|---:|---:|---:|---:|---|']
    for r in doc['runs']:
        lines.append(f"| {r['seed']} | {r['best_epoch']} | {_fmt(r['val_accuracy'])} | "
                     f"{_fmt(r['test_accuracy'])} | {r['run']} |")
    val, test = doc['val_accuracy'], doc['test_accuracy']
    lines.append(f"| **mean ± std** (n={test['n']}) | | **{_mean_std(val)}** | "
                 f'**{_mean_std(test)}** | |')
    return '\n'.join(lines) + '\n'


@exit_on_user_error
def main(argv=None):
    """Run the command line; returns the seeds.json document."""
    args, passed = parse_args(argv)
    # Check every run's flags and folder before the first one trains for hours.
    cfg, _, _ = parse_config(args.setting, seed_argv(args, passed, args.seeds[0]),
                             SCRIPTS[args.setting].program)
    if cfg['n_epoch'] == 0:
        raise UserError('--n_epoch 0 trains nothing; give the number of epochs of each run')
    taken = [f'seed_{s}' for s in args.seeds if holds_run(args.snapshot_pref / f'seed_{s}')]
    if taken and not args.overwrite:
        raise UserError(f"{args.snapshot_pref} already holds runs of {', '.join(taken)}; pass "
                        '--overwrite to train them afresh, or choose another --snapshot_pref')
    try:
        args.snapshot_pref.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'--snapshot_pref {args.snapshot_pref} cannot be created ({e.strerror}); '
                        'choose a folder you can write to')
    runs = []
    for i, seed in enumerate(args.seeds, 1):
        folder = args.snapshot_pref / f'seed_{seed}'
        print(f'== seed {seed} ({i}/{len(args.seeds)}) -> {folder}', flush=True)
        result = run_main(args.setting, seed_argv(args, passed, seed),
                          SCRIPTS[args.setting].program)
        runs.append({'seed': seed, 'best_epoch': result['best_epoch'],
                     'val_accuracy': result['val_accuracy'],
                     'test_accuracy': result['test_accuracy'], 'run': str(folder)})
        doc = table(args.setting, cfg['select_on'], runs)
        write_json(args.snapshot_pref / 'seeds.json', doc)
        write_text(args.snapshot_pref / 'seeds.md', table_markdown(doc))
    print(table_markdown(doc))
    print(f"table: {args.snapshot_pref / 'seeds.md'} and seeds.json")
    return doc


if __name__ == '__main__':
    main()
