"""Configuration: YAML defaults in configs/, each key also a command-line flag.

The defaults of a method in a localization setting are configs/base.yaml updated by
configs/<setting>.yaml, configs/<model>.yaml and configs/<model>_<setting>.yaml; those of
cross-modality localization (setting 'cml') are configs/cml.yaml and cml_<model>.yaml
(cml_dcmr.yaml under --protocol dcmr). A user file (--config PATH) and then the flags
override them. An unknown key or flag is an error,
and every value is checked before anything runs.
"""
import argparse
import difflib
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
# The methods: each has configs/<model>.yaml (its architecture) and, per setting it has,
# configs/<model>_<setting>.yaml (its recipe).
METHODS = tuple(sorted(p.stem for p in CONFIG_DIR.glob('*.yaml')
                       if '_' not in p.stem and p.stem not in ('base', 'supervised', 'weak', 'cml')))
# The localization settings (the methods' recipes), and cross-modality localization's
# matchers under the AVEL protocol (configs/cml_<model>.yaml).
LOCALIZATION = ('supervised', 'weak')
CML_MODELS = ('avel', 'dmin')
CHOICES = {'select_on': ('val', 'test'), 'feature_dtype': ('float32', 'float16'),
           'amp': ('none', 'bf16'), 'data_in_memory': ('auto', 'true', 'false'),
           'model': METHODS, 'avel_fusion': ('att', 'dmrn'), 'protocol': ('avel', 'dcmr'),
           'direction': ('a2v', 'v2a')}
# Keys that may differ from a checkpoint's config when resuming it: where the data and the
# run live, the hardware, and how long to train. Everything else continues as it was.
RESUME_OVERRIDABLE = ('data_root', 'snapshot_pref', 'device', 'num_threads', 'reuse_memory',
                      'n_epoch', 'progress', 'data_in_memory', 'num_workers', 'prefetch')
# Paths are never taken from a checkpoint (a file from anyone): they are the command line's,
# or today's defaults.
PATH_KEYS = ('data_root', 'snapshot_pref')
# The keys evaluating a checkpoint takes (the rest of the config is the checkpoint's):
# where the data are, the hardware, and how the features are held and computed.
EVAL_KEYS = ('data_root', 'device', 'num_threads', 'reuse_memory', 'progress',
             'data_in_memory', 'num_workers', 'prefetch', 'eval_batch_size', 'feature_dtype',
             'amp')
# What an evaluation takes on the command line: those, and the method (which must be the
# checkpoint's).
EVAL_FLAGS = ('model', *EVAL_KEYS)
# Cross-modality localization: a matcher is evaluated in either direction (DCMR only in its
# own), on the hardware and data given now.
CML_EVAL_KEYS = ('data_root', 'device', 'num_threads', 'reuse_memory', 'progress',
                 'eval_batch_size', 'direction')
CML_EVAL_FLAGS = ('model', 'protocol', *CML_EVAL_KEYS)


def eval_keys(setting):
    """(the keys an evaluation takes from the command line, its flags) of `setting`."""
    return (CML_EVAL_KEYS, CML_EVAL_FLAGS) if setting == 'cml' else (EVAL_KEYS, EVAL_FLAGS)
# Names users bring from other repositories, and the flag that does that here.
FLAG_ALIASES = {'learning_rate': 'lr', 'epochs': 'n_epoch', 'n_epochs': 'n_epoch',
                'num_epochs': 'n_epoch', 'epoch': 'n_epoch', 'bs': 'batch_size',
                'wd': 'weight_decay', 'gpu': 'device', 'data': 'data_root', 'data_dir': 'data_root',
                'dataset': 'data_root', 'output_dir': 'snapshot_pref', 'out_dir': 'snapshot_pref',
                'save_dir': 'snapshot_pref', 'run_dir': 'snapshot_pref', 'checkpoint': 'resume',
                'ckpt': 'resume', 'threads': 'num_threads', 'eval': 'evaluate', 'test': 'evaluate'}


@dataclass(frozen=True)
class Scripts:
    """The entry points of a setting: its training and test scripts and their program."""
    train: str
    test: str
    program: str


SCRIPTS = {'supervised': Scripts('supv_train.sh', 'supv_test.sh', 'supv_main.py'),
           'weak': Scripts('weak_train.sh', 'weak_test.sh', 'weak_main.py'),
           'cml': Scripts('cml_train.sh', 'cml_test.sh', 'cml_main.py')}


def example(setting, prog):
    """The command that ends --help, by the name the user ran."""
    scripts, run = SCRIPTS[setting], f'runs/{setting}'
    direction = ' --direction a2v' if setting == 'cml' else ''
    if prog == scripts.test:
        return f'bash {prog} --data_root data --resume {run}/last.pth.tar{direction}'
    if prog == scripts.train:
        return f'bash {prog} --data_root data --snapshot_pref {run}{direction}'
    return f'python {scripts.program} --data_root data --snapshot_pref {run}{direction}'


FLOAT32_MAX = 3.4028234663852886e38
# Integer keys, of any method, that must be > 0 (widths, counts, batch sizes).
POSITIVE = {'batch_size', 'eval_batch_size', 'prefetch', 'd_model', 'n_heads', 'ff_dim',
            'decoder_ff_dim', 'encoder_layers', 'agta_hidden', 'mfb_factor', 'fusion_heads',
            'lstm_hidden', 'attention_hidden', 'audio_lstm_hidden', 'visual_lstm_hidden',
            'cmbs_topk', 'hidden', 'embed_dim'}
DEVICE_NAME = re.compile(r'auto|cpu|cuda(:\d+)?')   # what --device takes (engine/device.py)
_HELP_LINE = re.compile(r'^(\w+):.*?#\s*(.*)$')


def read_yaml(path):
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except OSError as e:
        raise UserError(f'cannot read config file {path} ({e.strerror}); check the --config path')
    except UnicodeDecodeError:
        raise UserError(f'config file {path} is not text (not UTF-8); --config takes a YAML '
                        'file of key: value lines') from None
    except yaml.YAMLError as e:
        raise UserError(f'config file {path} is not valid YAML ({str(e).splitlines()[0]})')
    if not isinstance(cfg, dict):
        raise UserError(f'config file {path} must be a mapping of key: value lines')
    return cfg


def read_help(path):
    """{key: the comment after it} from a config file."""
    found = (_HELP_LINE.match(line) for line in Path(path).read_text().splitlines())
    return {m.group(1): m.group(2) for m in found if m}


def default_config(setting, model='dmin', protocol=None):
    """(defaults, help) of `model` in `setting`: base.yaml, <setting>.yaml, <model>.yaml and
    <model>_<setting>.yaml, each adding and overriding keys (cross-modality localization:
    cml.yaml and cml_<model>.yaml, or cml_dcmr.yaml under `protocol` 'dcmr')."""
    if setting == 'cml':
        return cml_config(model, protocol)
    if model not in METHODS:
        raise UserError(f"--model {model!r} is invalid: choose one of {', '.join(METHODS)}")
    if not (CONFIG_DIR / f'{model}_{setting}.yaml').is_file():
        raise UserError(f'--model {model} has no {setting} variant; choose one of '
                        f"{', '.join(m for m in METHODS if (CONFIG_DIR / f'{m}_{setting}.yaml').is_file())}")
    cfg, helps = {}, {}
    for name in ('base.yaml', f'{setting}.yaml', f'{model}.yaml', f'{model}_{setting}.yaml'):
        cfg.update(read_yaml(CONFIG_DIR / name))
        helps.update(read_help(CONFIG_DIR / name))
    return {**cfg, 'model': model}, helps


def cml_config(model, protocol):
    protocol = protocol or read_yaml(CONFIG_DIR / 'cml.yaml')['protocol']
    model = model or ('dmin' if protocol == 'dcmr' else read_yaml(CONFIG_DIR / 'cml.yaml')['model'])
    if model not in CML_MODELS:
        raise UserError(f"--model {model!r} is invalid for cross-modality localization: choose "
                        f"one of {', '.join(CML_MODELS)}")
    if protocol not in CHOICES['protocol']:
        raise UserError(f"--protocol {protocol!r} is invalid: choose one of "
                        f"{', '.join(CHOICES['protocol'])}")
    if protocol == 'dcmr' and model != 'dmin':
        raise UserError(f'--protocol dcmr is DMIN\'s release model (DCMR); drop --model {model} '
                        'or pass --model dmin')
    cfg, helps = {}, {}
    for name in ('cml.yaml', f"cml_{'dcmr' if protocol == 'dcmr' else model}.yaml"):
        cfg.update(read_yaml(CONFIG_DIR / name))
        helps.update(read_help(CONFIG_DIR / name))
    return {**cfg, 'model': model, 'protocol': protocol}, helps


def chosen(argv, key, default=None):
    """The --KEY value of command line `argv` (or of its --config file), else `default`: the
    model (and the protocol) decide which keys the command line has."""
    argv = list(argv)
    for i, word in enumerate(argv):
        if word == f'--{key}' and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(f'--{key}='):
            return word.split('=', 1)[1]
    for i, word in enumerate(argv):
        path = argv[i + 1] if word == '--config' and i + 1 < len(argv) else (
            word.split('=', 1)[1] if word.startswith('--config=') else None)
        if path is not None and isinstance(read_yaml(path).get(key), str):
            return read_yaml(path)[key]
    return default


def chosen_model(argv):
    """The --model of command line `argv` (or of its --config file), else base.yaml's."""
    return chosen(argv, 'model', read_yaml(CONFIG_DIR / 'base.yaml')['model'])


def coerce(key, value, default, source):
    """`value` as the type of `default`, or a UserError naming the key and its source."""
    kind = type(default)
    bad = UserError(f'{source}: {key} must be {_describe(default)}, got {value!r}')
    if isinstance(value, bool) and str(value).lower() in CHOICES.get(key, ()):
        return str(value).lower()          # YAML reads `data_in_memory: false` as a bool
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise bad
        return [coerce(key, v, default[0], source) for v in value] if default else value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise bad
    return value


def _describe(default):
    if isinstance(default, bool):
        return 'true or false'
    if isinstance(default, list):
        return f'a list of {type(default[0]).__name__}' if default else 'a list'
    return {int: 'an integer', float: 'a number', str: 'a string'}[type(default)]


def program_name(default):
    """The name the user ran: the shell script that started Python (it sets DMIN_SCRIPT),
    else `default`, so that --help and error lines name what the user typed."""
    return os.environ.get('DMIN_SCRIPT') or default


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (a UserError), not the whole usage, that
    suggests the flag meant for an unknown one, and takes no abbreviated flags."""

    def __init__(self, example=None, **kwargs):
        super().__init__(allow_abbrev=False, **kwargs)
        self.example = example

    def format_help(self):
        """argparse's help, ending with the example command on one line of its own."""
        text = super().format_help()
        return f'{text}\nexample: {self.example}\n' if self.example else text

    def error(self, message):
        unknown = re.match(r'unrecognized arguments: (.*)', message)
        trains = [w for w in (unknown.group(1).split() if unknown else ())
                  if w.split('=')[0] in getattr(self, 'training_flags', ())]
        if trains:
            raise UserError(f'{trains[0]} is a training flag, and {self.prog} only evaluates a '
                            "checkpoint (its config applies); see its --help for what it takes")
        if unknown:
            hints = [h for h in map(self.suggest, unknown.group(1).split()) if h]
            if hints:
                message += f" (did you mean {', '.join(dict.fromkeys(hints))}?)"
        raise UserError(f'{message}; see {self.prog} --help')

    def suggest(self, word):
        """The known flag closest to `word`, or None."""
        if not word.startswith('--'):
            return None
        known = [f for f in self._option_string_actions if f.startswith('--')]
        name = word[2:].split('=')[0].replace('-', '_')
        alias = difflib.get_close_matches(name, FLAG_ALIASES, n=1, cutoff=0.85)
        for candidate in (name, *(FLAG_ALIASES[a] for a in alias)):
            if f'--{candidate}' in known:
                return f'--{candidate}'
        close = difflib.get_close_matches(f'--{name}', known, n=1, cutoff=0.75)
        return close[0] if close else None


def build_parser(setting, defaults, helps, prog, evaluation=False):
    """The parser of `setting`'s program; with `evaluation` (the test scripts), only what
    evaluating a checkpoint takes."""
    what = 'Evaluate a checkpoint of' if evaluation else 'Train or evaluate'
    model = defaults['model']
    if setting == 'cml':
        kind = 'dcmr' if defaults['protocol'] == 'dcmr' else model
        task = (f'cross-modality localization with the {model} matcher (--model and '
                f'--protocol choose it, and so the keys listed). Defaults come from '
                f'configs/cml.yaml and cml_{kind}.yaml')
    else:
        task = (f'{setting} {model} on AVE-layout features (--model chooses the method, and so '
                f'the keys listed). Defaults come from configs/base.yaml, {setting}.yaml, '
                f'{model}.yaml and {model}_{setting}.yaml')
    flags = eval_keys(setting)[1]
    parser = Parser(
        prog=prog, argument_default=argparse.SUPPRESS,
        description=f'{what} {task}'
                    + ("; the rest of the config is the checkpoint's." if evaluation else '.'),
        example=example(setting, prog))
    run = parser.add_argument_group('run')
    run.add_argument('--config', metavar='PATH', help='YAML file overriding config keys')
    run.add_argument('--resume', metavar='CKPT',
                     help='the checkpoint to evaluate' if evaluation else
                     'continue training from last.pth.tar (or, with --evaluate, the '
                     'checkpoint to evaluate)')
    run.add_argument('--evaluate', action='store_true',
                     help=argparse.SUPPRESS if evaluation else
                     'only evaluate the --resume checkpoint on the test split')
    run.add_argument('--report', metavar='DIR',
                     help='with --evaluate: also write report.json and report.md of the test '
                          'split to DIR' + ('' if setting == 'cml' else
                                            ', with its confusion-matrix and per-class PNGs'))
    if not evaluation:
        run.add_argument('--overwrite', action='store_true',
                         help='start afresh in a --snapshot_pref that holds a previous run, '
                              'deleting its checkpoints, logs and metrics')
    keys = parser.add_argument_group('config keys')
    for key, default in defaults.items():
        if evaluation and key not in flags:
            continue
        text = helps.get(key, '')
        if isinstance(default, bool):
            keys.add_argument(f'--{key}', dest=key, action='store_const', const=True,
                              help=f'{text} (default: {str(default).lower()})')
            keys.add_argument(f'--no_{key}', dest=key, action='store_const', const=False,
                              help=f'turn {key} off')
        elif isinstance(default, list):
            keys.add_argument(f'--{key}', nargs='*', type=type(default[0]) if default else str,
                              metavar='N', help=f'{text} (default: {default})')
        else:
            keys.add_argument(f'--{key}', type=type(default), choices=CHOICES.get(key),
                              metavar=None if key in CHOICES else key.upper(),
                              help=f'{text} (default: {default})')
    parser.training_flags = {f'--{k}' for k in defaults if k not in flags} | {
        f'--no_{k}' for k, v in defaults.items() if isinstance(v, bool) and k not in flags
    } | {'--overwrite'} if evaluation else set()
    return parser


def parse_config(setting, argv=None, prog=None):
    """Parse the command line of `setting` (`prog`: the name the user ran; its test script
    only evaluates).

    Returns (cfg, run, explicit): the resolved config dict, the run-mode options
    (config, resume, evaluate, overwrite, report) and the set of keys given on the command
    line or in --config.
    """
    argv = sys.argv[1:] if argv is None else argv
    if setting == 'cml':
        defaults, helps = cml_config(chosen(argv, 'model'), chosen(argv, 'protocol'))
    else:
        defaults, helps = default_config(setting, chosen_model(argv))
    flags = eval_keys(setting)[1]
    prog = prog or program_name(SCRIPTS[setting].program)
    evaluation = prog == SCRIPTS[setting].test
    args = vars(build_parser(setting, defaults, helps, prog, evaluation).parse_args(argv))
    run = {k: args.pop(k, None) for k in ('config', 'resume', 'evaluate', 'overwrite', 'report')}
    run['evaluate'] = bool(run['evaluate'])
    run['overwrite'] = bool(run['overwrite'])
    if run['evaluate']:
        flag = next((f'--{k}' for k in args if k not in flags), None)
        flag = flag or ('--overwrite' if run['overwrite'] else None)
        if flag:
            raise UserError(f'{flag} is a training flag, and {prog} only evaluates here (the '
                            "checkpoint's config applies); it takes --resume, --report, "
                            f"--config and {', '.join('--' + k for k in flags)}")
        if not run['resume']:
            needs = f'{prog} needs' if evaluation else '--evaluate needs'
            raise UserError(f'{needs} --resume CKPT, the checkpoint to evaluate')
    cfg, given = dict(defaults), dict(args)
    if run['config']:
        from_file = read_yaml(run['config'])
        for key, value in from_file.items():
            if key not in defaults:
                raise UserError(f"{run['config']}: unknown config key '{key}'; see "
                                f'--help for the keys of the {setting} setting')
            cfg[key] = coerce(key, value, defaults[key], run['config'])
        given = {**from_file, **given}
    cfg.update(args)
    validate(cfg)
    # A key set in --config counts as given, exactly like the same key as a flag.
    return cfg, run, set(given)


def validate(cfg):
    """Raise a UserError naming the flag for any value that cannot work."""
    def need(ok, key, what):
        if not ok:
            raise UserError(f'--{key} {cfg[key]!r} is invalid: {what}')

    for key, value in cfg.items():
        if isinstance(value, float):   # training computes in float32
            need(math.isfinite(value) and abs(value) <= FLOAT32_MAX, key,
                 'must be a finite number (within float32, |x| <= 3.4e38)')
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, int) and not isinstance(v, bool):
                need(abs(v) < 2 ** 31, key, 'must be below 2**31')
    need(cfg['seed'] >= 0, 'seed', 'must be >= 0 (numpy takes seeds from 0 to 2**32 - 1)')
    need(cfg['num_threads'] <= 4096, 'num_threads', 'must be at most 4096 (0: torch\'s default)')
    for key in ('n_epoch', 'num_threads', 'tb_images_every', 'num_workers'):
        if key in cfg:
            need(cfg[key] >= 0, key, 'must be >= 0')
    for key in (k for k in cfg if k in POSITIVE):
        need(cfg[key] > 0, key, 'must be > 0')
    need(cfg['lr'] > 0, 'lr', 'must be > 0')
    need(cfg['weight_decay'] >= 0, 'weight_decay', 'must be >= 0')
    need(0 < cfg['lr_gamma'] <= 1, 'lr_gamma', 'must be in (0, 1]')
    need(cfg['clip_gradient'] >= 0, 'clip_gradient', 'must be >= 0 (0 disables clipping)')
    need(all(m > 0 for m in cfg['lr_milestones']), 'lr_milestones', 'epochs must be > 0')
    need(list(cfg['lr_milestones']) == sorted(cfg['lr_milestones']), 'lr_milestones',
         'epochs must increase')
    for key in (k for k in cfg if k.endswith('_dropout')):
        need(0 <= cfg[key] < 1, key, 'must be in [0, 1)')
    for key in (k for k in cfg if k.endswith('_weight')):
        need(cfg[key] >= 0, key, 'must be >= 0')
    need(DEVICE_NAME.fullmatch(cfg['device']) is not None, 'device',
         'use auto, cpu, cuda or cuda:N')
    for key, choices in CHOICES.items():
        if key in cfg:
            need(cfg[key] in choices, key, f"choose one of {', '.join(choices)}")
    need(bool(cfg['snapshot_pref']), 'snapshot_pref', 'must name a folder')
    if 'd_model' in cfg:   # the Transformer models: DMIN, CMRAN, CMBS, DMIN's matchers
        need(cfg['d_model'] % cfg['n_heads'] == 0 and cfg['d_model'] // cfg['n_heads'] >= 2,
             'n_heads', f"must divide d_model={cfg['d_model']} into heads of width >= 2")
    if 'fusion_heads' in cfg:
        need(cfg['d_model'] % cfg['fusion_heads'] == 0, 'fusion_heads',
             f"must divide d_model={cfg['d_model']}")
    if 'dima_lambda' in cfg:
        need(0 <= cfg['dima_lambda'] <= 1, 'dima_lambda', 'must be in [0, 1]')
    if 'agta_hidden' in cfg:   # DMIN
        for key in ('d_model', 'agta_hidden'):
            need(cfg[key] % 2 == 0, key, 'must be even')
    if 'protocol' in cfg:      # cross-modality localization
        need(cfg['model'] in CML_MODELS, 'model', f"choose one of {', '.join(CML_MODELS)}")
    if 'margin' in cfg:
        need(cfg['margin'] > 0, 'margin', 'must be > 0')
    if 'psp_threshold' in cfg:
        need(0 <= cfg['psp_threshold'] < 1, 'psp_threshold', 'must be in [0, 1)')
    for key in ('cmbs_alpha', 'cmbs_beta', 'cmbs_gamma'):
        if key in cfg:
            need(0 <= cfg[key] <= 1, key, 'must be in [0, 1]')


def with_saved(cfg, saved, path, setting):
    """`cfg` with the values of the config `saved` in checkpoint `path` (of `setting`),
    checked like a config file's: keys added to the repository after the checkpoint was
    written keep today's value, keys since removed are dropped, and the PATH_KEYS stay
    `cfg`'s. The checkpoint's method decides the keys (a checkpoint before methods were
    recorded is DMIN's)."""
    model = saved.get('model', 'dmin')
    if model not in (CML_MODELS if setting == 'cml' else METHODS):
        raise UserError(f'{path} names no method of this repository ({model!r}); use a '
                        'checkpoint written by supv_main.py, weak_main.py or cml_main.py')
    protocol = saved.get('protocol')
    if setting == 'cml' and protocol not in CHOICES['protocol']:
        raise UserError(f'{path} names no protocol of this repository ({protocol!r}); use a '
                        'checkpoint written by cml_main.py')
    if model != cfg['model'] or protocol != cfg.get('protocol'):   # another method's keys
        defaults = default_config(setting, model, protocol)[0]
        cfg = {**defaults, **{k: v for k, v in cfg.items() if k in defaults}, 'model': model}
    merged = {**cfg, **{k: coerce(k, v, cfg[k], path) for k, v in saved.items()
                        if k in cfg and k not in PATH_KEYS}}
    try:
        validate(merged)
    except UserError as e:
        raise UserError(f'{path} holds a config value that cannot work ({e})') from None
    return merged


def check_model(saved, cfg, explicit, path):
    """Refuse a --model (or --protocol) given now that is not checkpoint `path`'s."""
    for key, default in (('model', 'dmin'), ('protocol', None)):
        value = saved.get(key, default)
        if key in explicit and cfg[key] != value:
            saved_as, given = ((value, cfg[key]) if key == 'model' else
                               (f'the {value} protocol', f'the {cfg[key]} one'))
            raise UserError(f"{path} is a checkpoint of {saved_as}, not {given}; drop "
                            f"--{key} or pass --{key} {value}")


def resume_config(saved, cfg, explicit, path, setting):
    """The config of a resumed run: the checkpoint's, with the overridable flags given now;
    the run stays in the checkpoint's folder unless --snapshot_pref says otherwise."""
    check_model(saved, cfg, explicit, path)
    resumed = with_saved(cfg, saved, path, setting)
    if 'snapshot_pref' not in explicit:
        resumed['snapshot_pref'] = str(Path(path).parent)
    for key in explicit:
        if key in RESUME_OVERRIDABLE:
            resumed[key] = cfg[key]
        elif key in saved and cfg[key] != saved[key]:
            raise UserError(f'--{key} {cfg[key]!r} differs from the value {saved.get(key)!r} '
                            f'stored in {path}; a resumed run keeps its config (only '
                            f"{', '.join('--' + k for k in RESUME_OVERRIDABLE)} may change)")
    return resumed


def evaluation_config(saved, cfg, explicit, path, setting):
    """The config of evaluating checkpoint `path`: its config `saved`, with the EVAL_KEYS
    given now; another key that a --config file sets to another value is refused."""
    check_model(saved, cfg, explicit, path)
    keys = eval_keys(setting)[0]
    for key in sorted(explicit - set(keys) - {'model', 'protocol'}):
        if cfg[key] != saved.get(key):
            raise UserError(f'--{key} cannot change when evaluating a checkpoint; its value '
                            f'comes from {path}')
    return {**with_saved(cfg, saved, path, setting),
            **{k: cfg[k] for k in explicit if k in keys}}


def dump_config(cfg):
    return yaml.safe_dump(cfg, sort_keys=False)
