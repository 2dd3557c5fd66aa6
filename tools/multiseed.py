"""Train one setting once per seed and tabulate val/test accuracy as mean +- std.

    python tools/multiseed.py --setting supervised --seeds 1 2 3 --snapshot_pref runs/seeds \\
                              [--overwrite] [any flag of supv_main.py / weak_main.py]

Seed s trains in <snapshot_pref>/seed_<s> with --seed s (the normal training run, with
its checkpoints, metrics.json and report); after each seed, <snapshot_pref>/seeds.md and
seeds.json hold every finished seed's best epoch and its val and test accuracy, with their
mean, sample standard deviation and count. Seed folders that already hold a run are
refused before anything trains, unless --overwrite is given (it is passed to every run) or
--continue: then a seed whose run stopped part-way resumes from its last.pth.tar, a finished
one is read back, and the seeds not yet started train; the table is the same as one
uninterrupted call would have written. --model chooses the method, like the training
scripts' (default dmin).
"""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.atomic import write_json, write_text  # noqa: E402
from core.errors import UserError, exit_on_user_error  # noqa: E402
from main import main as run_main  # noqa: E402
from engine.checkpoint import load_resumable  # noqa: E402
from engine.config import (LOCALIZATION, SCRIPTS, Parser, chosen_model, parse_config,  # noqa: E402
                           program_name)
from engine.run_dir import LAST, holds_run  # noqa: E402
from model import METHODS  # noqa: E402

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
    parser.add_argument('--setting', required=True, choices=LOCALIZATION)
    parser.add_argument('--seeds', required=True, nargs='+', type=int, metavar='S',
                        help='the seeds, e.g. --seeds 1 2 3')
    parser.add_argument('--snapshot_pref', metavar='DIR',
                        help='folder of the seed runs and the table (default: runs/seeds_<model>_<setting>)')
    parser.add_argument('--overwrite', action='store_true',
                        help='retrain seeds whose folder already holds a run')
    parser.add_argument('--continue', dest='resume_runs', action='store_true',
                        help='continue an interrupted call: resume the seed runs that stopped '
                             'part-way, read back the finished ones, train the rest')
    return parser


def split_flags(parser, argv, own, why):
    """(the args of `parser`, the flags it leaves for the training runs); a flag of `own`
    among those is refused, with `why`."""
    args, passed = parser.parse_known_args(argv)
    found = [a for a in passed if a.split('=')[0] in own]
    if found:
        raise UserError(f'{found[0]} cannot be passed through {parser.prog}: {why}')
    return args, passed


def parse_args(argv):
    args, passed = split_flags(build_parser(), argv, OWN_FLAGS, 'it sets --seed and '
                               '--snapshot_pref of each run itself and only trains')
    if args.overwrite and args.resume_runs:
        raise UserError('--overwrite retrains every seed and --continue keeps them; pass one')
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed; each seed "
                        'trains once')
    args.snapshot_pref = Path(args.snapshot_pref
                              or f'runs/seeds_{chosen_model(passed)}_{args.setting}')
    return args, passed


def seed_argv(args, passed, seed):
    """The training command line of one seed."""
    argv = [*passed, '--seed', str(seed), '--snapshot_pref', str(args.snapshot_pref / f'seed_{seed}')]
    return argv + ['--overwrite'] if args.overwrite else argv


def run_seed(setting, argv, folder, resume_runs):
    """Train the seed run of command line `argv` in `folder` (with `resume_runs`, continue the
    run the folder holds: nothing trains when it is finished) and return its result, as its
    last.pth.tar records it: {best_epoch, val_accuracy, test_accuracy, history, model_args}."""
    program = SCRIPTS[setting].program
    if resume_runs and (folder / LAST).exists():
        print(f'continuing {folder / LAST}', flush=True)
        argv = [*argv, '--resume', str(folder / LAST)]
    run_main(setting, argv, program)
    state = load_resumable(folder / LAST, setting)
    best = state['best']
    return {'best_epoch': best['epoch'], 'val_accuracy': best['val_accuracy'],
            'test_accuracy': best['test_accuracy'], 'history': state['history'],
            'model_args': state['model_args']}


def write_tables(folder, stem, doc, markdown):
    """<folder>/<stem>.json (the document) and <stem>.md (its Markdown `markdown`)."""
    write_json(folder / f'{stem}.json', doc)
    write_text(folder / f'{stem}.md', markdown)


def summarize(values):
    """{mean, std (sample, None below 2 values), n} of the numbers in `values`."""
    values = [v for v in values if v is not None]
    return {'mean': statistics.fmean(values) if values else None,
            'std': statistics.stdev(values) if len(values) > 1 else None, 'n': len(values)}


def table(setting, model, select_on, runs):
    """The JSON document of finished seed runs of method `model`."""
    return {'setting': setting, 'model': model, 'select_on': select_on, 'runs': runs,
            'val_accuracy': summarize([r['val_accuracy'] for r in runs]),
            'test_accuracy': summarize([r['test_accuracy'] for r in runs])}


def _fmt(value, digits=3):
    return 'n/a' if value is None else f'{value:.{digits}f}'


def mean_std(stats):
    if stats['mean'] is None:
        return 'n/a'
    std = 'n/a' if stats['std'] is None else f"{stats['std']:.2f}"
    return f"{stats['mean']:.2f} ± {std}"


def table_markdown(doc):
    name = METHODS[doc['model']].NAME
    lines = [f"# {doc['setting']} {name} over {len(doc['runs'])} seeds", '',
             f"Segment accuracy (%) at each run's best epoch, selected on {doc['select_on']}; "
             'mean ± sample standard deviation over the seeds.', '',
             '| seed | best epoch | val accuracy | test accuracy | run folder |',
             '|---:|---:|---:|---:|---|']
    for r in doc['runs']:
        lines.append(f"| {r['seed']} | {r['best_epoch']} | {_fmt(r['val_accuracy'])} | "
                     f"{_fmt(r['test_accuracy'])} | {r['run']} |")
    val, test = doc['val_accuracy'], doc['test_accuracy']
    lines.append(f"| **mean ± std** (n={test['n']}) | | **{mean_std(val)}** | "
                 f'**{mean_std(test)}** | |')
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
    if taken and not (args.overwrite or args.resume_runs):
        raise UserError(f"{args.snapshot_pref} already holds runs of {', '.join(taken)}; pass "
                        '--continue to continue them, --overwrite to train them afresh, or '
                        'choose another --snapshot_pref')
    try:
        args.snapshot_pref.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'--snapshot_pref {args.snapshot_pref} cannot be created ({e.strerror}); '
                        'choose a folder you can write to')
    runs = []
    for i, seed in enumerate(args.seeds, 1):
        folder = args.snapshot_pref / f'seed_{seed}'
        print(f'== seed {seed} ({i}/{len(args.seeds)}) -> {folder}', flush=True)
        result = run_seed(args.setting, seed_argv(args, passed, seed), folder, args.resume_runs)
        runs.append({'seed': seed, 'best_epoch': result['best_epoch'],
                     'val_accuracy': result['val_accuracy'],
                     'test_accuracy': result['test_accuracy'], 'run': str(folder)})
        doc = table(args.setting, cfg['model'], cfg['select_on'], runs)
        write_tables(args.snapshot_pref, 'seeds', doc, table_markdown(doc))
    print(table_markdown(doc))
    print(f"table: {args.snapshot_pref / 'seeds.md'} and seeds.json")
    return doc


if __name__ == '__main__':
    main()
