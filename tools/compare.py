"""The field's comparison table: each method trained in each setting over N seeds, under one
protocol, on one data folder.

    python tools/compare.py --data_root data --models dmin avel psp cmran cmbs \\
        --settings supervised weak --seeds 1 2 3 --snapshot_pref runs/compare [flags...]

Method m in setting s is tools/multiseed.py in <snapshot_pref>/<m>_<s> (seed runs
seed_<k>, each the normal training run with the method's recipe, configs/<m>_<s>.yaml), and
<snapshot_pref>/compare.md and compare.json hold, per method and setting: the test accuracy
at the epoch chosen on val (mean +- sample std over the seeds), the val accuracy there, the
best test accuracy of any epoch (the protocol of most official releases, which choose the
epoch on test: listed for comparison with published numbers, not as a result), the
trainable parameters, the training speed (videos/s over all epochs of all seeds) and the
wall time per seed run. Every other flag (e.g. --n_epoch, --device) goes to every run.

The same command again continues an interrupted comparison: finished runs are read back,
a run that stopped part-way resumes from its last.pth.tar, the rest train. --overwrite
starts every run afresh.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.errors import UserError, exit_on_user_error  # noqa: E402
from engine.config import METHODS as CONFIGS  # noqa: E402
from engine.config import (LOCALIZATION, SCRIPTS, Parser, default_config, parse_config,  # noqa: E402
                           program_name)
from model import METHODS, build_model, count_parameters  # noqa: E402
from tools.multiseed import mean_std, run_seed, split_flags, summarize, write_tables  # noqa: E402

# Flags compare sets itself for every run, or that would make the table another protocol's.
OWN_FLAGS = ('--model', '--seed', '--snapshot_pref', '--resume', '--evaluate', '--report',
             '--select_on', '--config')


def build_parser():
    parser = Parser(
        prog=program_name('tools/compare.py'),
        description='Train each method in each setting once per seed under one protocol; write '
                    'compare.md and compare.json: val-selected test accuracy (mean +- std), '
                    'best-on-test accuracy (the release protocol), parameters, speed, time.',
        epilog='Every other flag (e.g. --data_root, --n_epoch) is passed to every training run; '
               'the same command again continues an interrupted comparison.',
        example='bash compare.sh --data_root data --models dmin avel --seeds 1 2 --n_epoch 10')
    parser.add_argument('--models', nargs='+', choices=CONFIGS, default=list(CONFIGS),
                        metavar='M', help=f"the methods (default: all, {' '.join(CONFIGS)})")
    parser.add_argument('--settings', nargs='+', choices=LOCALIZATION,
                        default=list(LOCALIZATION), metavar='S',
                        help='the settings (default: supervised weak)')
    parser.add_argument('--seeds', required=True, nargs='+', type=int, metavar='K',
                        help='the seeds, e.g. --seeds 1 2 3')
    parser.add_argument('--snapshot_pref', metavar='DIR', default='runs/compare',
                        help='folder of the runs and the table (default: runs/compare)')
    parser.add_argument('--overwrite', action='store_true',
                        help='train every run afresh, deleting the runs the folder holds')
    return parser


def parse_args(argv):
    args, passed = split_flags(build_parser(), argv, OWN_FLAGS, 'it sets the method, seed and '
                               'folder of each run itself, selects on val and only trains')
    for name, values in (('--models', args.models), ('--settings', args.settings),
                         ('--seeds', args.seeds)):
        if len(set(values)) != len(values):
            raise UserError(f"{name} {' '.join(map(str, values))} repeats a value")
    args.snapshot_pref = Path(args.snapshot_pref)
    return args, passed


def runs_of(args, passed):
    """[(model, setting, folder, argv of seed 1)] of the comparison, each command line checked
    before anything trains."""
    runs = []
    for setting in args.settings:
        for model in args.models:
            default_config(setting, model)   # a method without this setting: one line
            folder = args.snapshot_pref / f'{model}_{setting}'
            argv = [*passed, '--model', model]
            cfg = parse_config(setting, seed_argv(argv, folder, args.seeds[0], args.overwrite),
                               SCRIPTS[setting].program)[0]
            if cfg['n_epoch'] == 0:
                raise UserError('--n_epoch 0 trains nothing; give the number of epochs of '
                                'each run')
            runs.append((model, setting, folder, argv))
    return runs


def seed_argv(argv, folder, seed, overwrite):
    out = [*argv, '--seed', str(seed), '--snapshot_pref', str(folder / f'seed_{seed}')]
    return out + ['--overwrite'] if overwrite else out


def row(model, setting, results):
    """The table's row of method `model` in `setting` from its seed runs' `results`
    (run_seed's dicts)."""
    records = [r for res in results for r in res['history']]
    timed = [r for r in records if 'train_videos' in r]
    seconds = sum(r['train_seconds'] for r in timed)
    return {
        'model': model, 'method': METHODS[model].NAME, 'setting': setting,
        'seeds': len(results), 'epochs': [len(res['history']) for res in results],
        'parameters': count_parameters(build_model(results[0]['model_args'])),
        'val_accuracy': summarize([res['val_accuracy'] for res in results]),
        'test_accuracy': summarize([res['test_accuracy'] for res in results]),
        'best_on_test': summarize([max(r['test_accuracy'] for r in res['history'])
                                   for res in results]),
        'train_videos_per_s': sum(r['train_videos'] for r in timed) / seconds if seconds else None,
        'seconds_per_run': sum(r['seconds'] for r in records) / len(results),
    }


def _duration(seconds):
    if seconds < 90:
        return f'{seconds:.0f} s'
    return f'{seconds / 60:.1f} min' if seconds < 5400 else f'{seconds / 3600:.1f} h'


def table_markdown(doc):
    lines = ['# Comparison', '',
             f"Segment accuracy (%) over seeds {', '.join(map(str, doc['seeds']))} (mean ± "
             'sample std), data folder ' + f"`{doc['data_root']}`" + '. **test @ val**: test '
             'accuracy at the epoch of best val accuracy (this table\'s protocol). '
             '**best test**: the best test accuracy of any epoch, the protocol of most '
             'official releases, which choose the epoch on test (for comparison with published '
             'numbers only). Speed: training videos/s over every epoch of every seed.', '',
             '| method | setting | parameters | epochs | val | test @ val | best test '
             '(release protocol) | train videos/s | time per run |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in doc['rows']:
        epochs = sorted(set(r['epochs']))
        speed = 'n/a' if r['train_videos_per_s'] is None else f"{r['train_videos_per_s']:.1f}"
        lines.append(f"| {r['method']} | {r['setting']} | {r['parameters']:,} | "
                     f"{'/'.join(map(str, epochs))} | {mean_std(r['val_accuracy'])} | "
                     f"**{mean_std(r['test_accuracy'])}** | {mean_std(r['best_on_test'])} | "
                     f"{speed} | {_duration(r['seconds_per_run'])} |")
    return '\n'.join(lines) + '\n'


@exit_on_user_error
def main(argv=None):
    """Run the command line; returns the compare.json document."""
    args, passed = parse_args(argv)
    runs = runs_of(args, passed)
    try:
        args.snapshot_pref.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f'--snapshot_pref {args.snapshot_pref} cannot be created ({e.strerror}); '
                        'choose a folder you can write to')
    data_root = parse_config(runs[0][1], runs[0][3], SCRIPTS[runs[0][1]].program)[0]['data_root']
    doc = {'data_root': data_root, 'seeds': args.seeds, 'select_on': 'val', 'rows': []}
    total = len(runs) * len(args.seeds)
    for i, (model, setting, folder, argv) in enumerate(runs):
        results = []
        for j, seed in enumerate(args.seeds):
            print(f'== {METHODS[model].NAME} {setting}, seed {seed} '
                  f'({i * len(args.seeds) + j + 1}/{total}) -> {folder}/seed_{seed}', flush=True)
            results.append(run_seed(setting, seed_argv(argv, folder, seed, args.overwrite),
                                    folder / f'seed_{seed}', not args.overwrite))
        doc['rows'].append(row(model, setting, results))
        write_tables(args.snapshot_pref, 'compare', doc, table_markdown(doc))
    print(table_markdown(doc))
    print(f"table: {args.snapshot_pref / 'compare.md'} and compare.json")
    return doc


if __name__ == '__main__':
    main()
