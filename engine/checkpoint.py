"""Checkpoints that survive crashes and strangers: atomic writes, a checksum, loading that
runs no code, RNG state, and the one way from a checkpoint to a model (`model_for`).

A checkpoint is a dict saved with torch.save: 'setting', 'epoch', 'model' (the state dict),
'model_args' (what the model was built with: its method, the setting, the data's sizes and
the method's model keys of the config), 'data' (the DataSpec of what it was trained on: class names, segments per
video, feature shapes), 'config' (the run's whole config) and, in last.pth.tar, what
resuming needs:
'optimizer', 'scheduler', 'rng', 'best' and 'history'; and 'checksum', the SHA-256 of all
of that. It holds only tensors, dicts, lists, tuples, numbers, strings and None (and the
scheduler's Counter), so it is loaded with torch.load(weights_only=True): a file that needs
anything else, such as code, is refused.
"""
import collections
import contextlib
import hashlib
import io
import math
import pickle
import random
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from core.atomic import atomic_write
from core.errors import UserError
from core.files import torch_file_kind
from dataset.layout import BACKGROUND_NAME, DataSpec
from engine import distributed as dist
from engine.config import SCRIPTS
from model import METHODS, SETTINGS, build_model, model_args
from model.matching import build_matcher

LAST = 'last.pth.tar'
BEST_PATTERN = 'model_epoch_{epoch}_top1_{acc:.3f}_task_{task}_best_model.pth.tar'
BEST_GLOB = 'model_epoch_*_best_model.pth.tar'
TASK_NAMES = {'supervised': 'Supervised', 'weak': 'WeaklySupervised', 'a2v': 'A2V', 'v2a': 'V2A'}
# Exactly the names best_name gives: a run deletes or copies a best checkpoint only under
# such a name, which has no path separator and so stays inside the run folder.
BEST_NAME = re.compile(r'model_epoch_[1-9][0-9]*_top1_[0-9]+\.[0-9]{3}_task_'
                       r'(Supervised|WeaklySupervised|A2V|V2A)_best_model\.pth\.tar')


def best_name(epoch, acc, task):
    """The best checkpoint's name of `task`: a localization setting, or a direction of
    cross-modality localization (task_of)."""
    return BEST_PATTERN.format(epoch=epoch, acc=acc, task=TASK_NAMES[task])


def task_of(setting, cfg):
    """What a run's best checkpoint is named for: its setting, or in cross-modality
    localization (setting 'cml') its direction."""
    return cfg['direction'] if setting == 'cml' else setting


def is_best_name(name):
    """Whether `name` is one that best_name gives (a file name, never a path)."""
    return isinstance(name, str) and BEST_NAME.fullmatch(name) is not None


# What the weights-only unpickler may build beyond tensors and plain containers: the
# learning-rate scheduler's Counter of milestones, and the numpy arrays of the RNG state in
# checkpoints written before it was stored as tensors. None of them runs code.
SAFE_TYPES = [collections.Counter, np._core.multiarray._reconstruct, np.ndarray, np.dtype,
              np.dtypes.UInt32DType]
# Fields of every checkpoint, and of a last.pth.tar, with their types.
FIELDS = {'setting': str, 'epoch': int, 'model': dict, 'config': dict}
# What every checkpoint of a run holds: a best checkpoint adds its val and test accuracy,
# last.pth.tar the TRAINING_FIELDS.
WEIGHT_FIELDS = ('setting', 'epoch', 'model', 'model_args', 'data', 'config')
TRAINING_FIELDS = {'optimizer': dict, 'scheduler': dict, 'rng': dict, 'best': dict,
                   'history': list}


def checksum(value):
    """SHA-256 (hex) of a nested value of dicts, lists, tuples, tensors and plain scalars:
    every tensor's dtype, shape and bytes, and every other value's repr, in order."""
    digest = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            digest.update(f'T{t.dtype}{tuple(t.shape)}'.encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(v, dict):
            digest.update(f'{{{len(v)}'.encode())
            for k, item in v.items():
                feed(k)
                feed(item)
        elif isinstance(v, (list, tuple)):
            digest.update(f'{type(v).__name__}{len(v)}'.encode())
            for item in v:
                feed(item)
        else:
            digest.update(f'{type(v).__name__}:{v!r};'.encode())

    feed(value)
    return digest.hexdigest()


def save_checkpoint(state, path):
    """Write `state` and its checksum to `path` atomically. It is serialised in memory first,
    so that a full disk is reported as such (torch's zip writer hides the OS error)."""
    buffer = io.BytesIO()
    torch.save({**state, 'checksum': checksum(state)}, buffer)
    atomic_write(path, buffer.getbuffer())


def load_checkpoint(path, flag='--resume'):
    """The dict saved by save_checkpoint, on the CPU, its checksum verified; a UserError if
    it cannot be read, would run code, is damaged or lacks a field."""
    path = Path(path)
    if not path.is_file():
        what = 'is a folder, not a file' if path.is_dir() else 'not found'
        raise UserError(f'checkpoint {path} {what}; pass {flag} with a .pth.tar file from '
                        'a run folder (--snapshot_pref)')
    kind = torch_file_kind(path)
    if kind != 'torch':
        raise UserError(f'{path} is not a checkpoint (it is {kind}); pass {flag} with a '
                        '.pth.tar file from a run folder (--snapshot_pref)')
    try:
        with torch.serialization.safe_globals(SAFE_TYPES):
            state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:   # a damaged file fails anywhere in zip, pickle or tensor decoding
        found = re.search(r'GLOBAL ([\w.]+)', str(e))
        if isinstance(e, pickle.UnpicklingError) and found:
            raise UserError(f'checkpoint {path} needs more than weights and plain values to '
                            f'load ({found.group(1)}), which could run code; it was not loaded: '
                            'use a checkpoint written by supv_main.py or weak_main.py') from None
        reason = textwrap.shorten(' '.join(str(e).split()) or type(e).__name__, 120,
                                  placeholder=' ...')
        raise UserError(f'checkpoint {path} is corrupt or truncated ({reason}); use another '
                        'checkpoint of the run') from None
    if not isinstance(state, dict) or 'model' not in state or 'config' not in state:
        raise UserError(f'{path} is not a checkpoint of this repository (no model/config '
                        'inside); use a checkpoint written by supv_main.py or weak_main.py')
    saved = state.pop('checksum', None)
    if saved is None:
        print(f'warning: {path} has no checksum (written by an older version of this '
              'repository), so damage to it cannot be detected', file=sys.stderr)
    elif saved != checksum(state):
        raise UserError(f'checkpoint {path} is damaged: its contents do not match the checksum '
                        'written with them; use another checkpoint of the run')
    check_fields(state, path, FIELDS)
    if state['epoch'] < 0:
        raise UserError(f"{path} says it was saved after epoch {state['epoch']}; a checkpoint's "
                        'epoch is >= 0: use a checkpoint written by supv_main.py or weak_main.py')
    return upgrade(state, path)


def check_fields(state, path, fields):
    """Refuse a checkpoint whose `fields` ({name: type}) are missing or of another type."""
    wrong = [f'{k} ({"missing" if k not in state else type(state[k]).__name__})'
             for k, kind in fields.items()
             if not isinstance(state.get(k), kind) or isinstance(state.get(k), bool)]
    if wrong:
        raise UserError(f"{path} has missing or mistyped fields: {', '.join(wrong)}; use a "
                        'checkpoint written by supv_main.py or weak_main.py')


# An epoch's record in a checkpoint's history (and metrics.json): these fields at least.
RECORD_FIELDS = {'epoch': int, 'lr': float, 'train': dict, 'val_accuracy': float,
                 'test_accuracy': float}
BEST_FIELDS = ('epoch', 'selected', 'val_accuracy', 'test_accuracy', 'checkpoint')


def load_resumable(path, setting):
    """The last.pth.tar at `path`, of `setting`, with a training state whose every field
    checks out (a UserError otherwise)."""
    state = load_checkpoint(path)
    check_setting(state, setting, path)
    if 'optimizer' not in state:
        raise UserError(f'{path} holds only a model; resume training from the {LAST} of its '
                        'run folder')
    check_fields(state, path, TRAINING_FIELDS)
    check_training_state(state, path)
    return state


def check_training_state(state, path):
    """Refuse a last.pth.tar whose epoch, history and best epoch do not tell one story: the
    epoch is the number of epoch records, each record is epoch i's numbers, and the best
    epoch is the first whose selected accuracy is the highest, with the file name that
    epoch's best checkpoint has (or none)."""
    def refuse(what):
        raise UserError(f'{path} holds an inconsistent training state ({what}); resume from '
                        'another last.pth.tar or start afresh')

    epoch, history, best = state['epoch'], state['history'], state['best']
    if len(history) != epoch:
        refuse(f'epoch {epoch} but {len(history)} epoch records')
    for i, record in enumerate(history, 1):
        if not isinstance(record, dict):
            refuse(f'epoch record {i} is {type(record).__name__}, not a record')
        for key, kind in RECORD_FIELDS.items():
            value = record.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                refuse(f'epoch record {i} has no {kind.__name__} {key}')
        if record['epoch'] != i:
            refuse(f"epoch record {i} says epoch {record['epoch']}")
        numbers = [record['lr'], record['val_accuracy'], record['test_accuracy'],
                   *record['train'].values()]
        if not all(isinstance(v, float) and math.isfinite(v) for v in numbers):
            refuse(f'epoch record {i} holds a value that is not a finite number')
    if sorted(best) != sorted(BEST_FIELDS):
        refuse(f"its best epoch has the fields {sorted(best)}, not {list(BEST_FIELDS)}")
    on = f"{state['config'].get('select_on', 'val')}_accuracy"
    scores = [r[on] for r in history]
    first = 1 + scores.index(max(scores)) if scores else 0
    expected = {'epoch': first, 'selected': scores[first - 1] if first else None,
                'val_accuracy': history[first - 1]['val_accuracy'] if first else None,
                'test_accuracy': history[first - 1]['test_accuracy'] if first else None}
    for key, value in expected.items():
        if best[key] != value or type(best[key]) is not type(value):
            refuse(f"its best epoch says {key} {best[key]!r}, but its history's best epoch "
                   f'({first}) has {value!r}')
    name = best['checkpoint']
    task = task_of(state['setting'], {'direction': state['config'].get('direction')})
    if name is not None and not (first and is_best_name(name) and task in TASK_NAMES
                                 and name == best_name(first, expected['selected'], task)):
        refuse(f'its best checkpoint is named {name!r}, not as epoch {first} names it')


def upgrade(state, path):
    """A checkpoint of an earlier version as this one writes them. Versions before methods
    were recorded were all DMIN; before data specs were recorded, all trained on the AVE
    release (their 'data' is AVE's); before that, 'model_args' were not stored either: the
    setting, those sizes and the model keys of the config. Cross-modality localization's
    checkpoints are as this version writes them."""
    if state['setting'] not in SETTINGS:
        return state
    state['config'] = {'model': 'dmin', **state['config']}
    if 'data' not in state:
        state['data'] = DataSpec.recorded(None).to_dict()
    keys = METHODS['dmin'].MODEL_KEYS
    if 'model_args' not in state and all(k in state['config'] for k in keys):
        state['model_args'] = model_args(state['setting'], DataSpec.recorded(None),
                                         state['config'])
    args = state.get('model_args')
    if isinstance(args, dict) and 'model' not in args:   # DMIN's, before methods
        try:
            shape = DataSpec.recorded(state['data']).visual_shape
        except (ValueError, TypeError):
            shape = None   # a damaged 'data' field is refused where it is read
        positions = {'positions': shape[0] * shape[1]} if shape else {}
        state['model_args'] = {'model': 'dmin', **positions, **args}
    return state


def check_setting(state, setting, path, fix=None):
    """Refuse a checkpoint of the other setting, naming `fix` (default: the scripts that
    take it)."""
    saved = state.get('setting')
    if saved not in SCRIPTS:
        raise UserError(f'{path} names no setting ({saved!r}); use a checkpoint written '
                        'by supv_main.py, weak_main.py or cml_main.py')
    if setting is not None and saved != setting:
        scripts = SCRIPTS[saved]
        raise UserError(f'{path} was saved by the {saved} setting, not {setting}; '
                        f"{fix or f'use {scripts.train} / {scripts.test} for it'}")


def saved_spec(state, path):
    """The DataSpec of the data checkpoint `state` was trained on."""
    try:
        return DataSpec.recorded(state['data'])
    except ValueError:
        raise UserError(f"{path} has a damaged 'data' field (what it was trained on); use a "
                        'checkpoint written by supv_main.py or weak_main.py') from None


def model_for(state, path, spec):
    """The one way from a checkpoint to a model: the method rebuilt from checkpoint `state`'s
    model_args, with its weights (on the CPU), for data of DataSpec `spec`. Returns (model,
    label names: the checkpoint's C class names, then background). Data of another shape,
    and a checkpoint whose weights, model and data do not fit together, are refused in one
    line; data that name their classes otherwise get a warning (the checkpoint's names
    name the predictions)."""
    if 'model_args' not in state:
        missing = [k for k in METHODS['dmin'].MODEL_KEYS if k not in state['config']]
        raise UserError(f"{path} has no model config ({', '.join(missing)} missing); use a "
                        'checkpoint written by supv_main.py or weak_main.py')
    trained_on = saved_spec(state, path)
    trained_on.check(spec, path)
    renamed = trained_on.renamed(spec)
    if renamed is not None:
        print(f"warning: these data name class {renamed} '{spec.class_names[renamed]}', but "
              f"{path} was trained with '{trained_on.class_names[renamed]}' (check "
              "classes.txt); results use the checkpoint's names", file=sys.stderr)
    args = dict(state['model_args'])
    if args.get('model') != state['config'].get('model'):
        raise UserError(f"{path} names two methods, {state['config'].get('model')!r} in its config "
                        f"and {args.get('model')!r} in its model; use a checkpoint written by "
                        'supv_main.py or weak_main.py')
    sizes = {'num_classes': trained_on.num_classes, 'audio_dim': trained_on.audio_dim,
             'visual_dim': trained_on.visual_dim,
             'positions': trained_on.visual_shape[0] * trained_on.visual_shape[1]}
    if any(args.get(k) != v for k, v in sizes.items()):
        raise UserError(f'{path} describes its data ({sizes}) otherwise than its model '
                        f"({ {k: args.get(k) for k in sizes} }); use a checkpoint written by "
                        'supv_main.py or weak_main.py')
    model = built(build_model, args, state['model'], path, args['setting'],
                  'supv_main.py or weak_main.py')
    return model, (*trained_on.class_names, BACKGROUND_NAME)


def built(build, args, weights, path, setting, programs):
    """`build(args)` holding `weights` (checkpoint `path`'s, of `setting`), in one line where
    it cannot be built, the weights do not fit or are not finite (`programs`: what writes
    good checkpoints)."""
    try:
        model = build(args)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f'{path} holds model arguments its model cannot be built from ({e}); '
                        f'use a checkpoint written by {programs}') from None
    load_model_state(model, weights, path, setting)
    if not all(p.isfinite().all() for p in model.parameters()):
        raise UserError(f'{path} holds NaN or Inf weights, which predict nothing; use another '
                        'checkpoint of the run')
    return model


def matcher_for(state, path, spec):
    """model_for of cross-modality localization: the matcher of checkpoint `state` (at
    `path`), for data of DataSpec `spec`, whose segments and feature widths must be those it
    was trained on."""
    args, data = state.get('model_args'), state.get('data')
    sizes = {'num_segments': spec.num_segments, 'audio_dim': spec.audio_dim,
             'visual_dim': spec.visual_dim}
    if not isinstance(args, dict) or not isinstance(data, dict):
        raise UserError(f'{path} has no model or data description; use a checkpoint written '
                        'by cml_main.py')
    for key, value in sizes.items():
        if data.get(key) != value:
            raise UserError(f'{path} was trained on data with {key} {data.get(key)!r}, but these '
                            f'data have {value}; use a checkpoint trained on data of this shape')
        if key != 'num_segments' and args.get(key) != value:
            raise UserError(f'{path} describes its data otherwise than its model ({key}); use a '
                            'checkpoint written by cml_main.py')
    return built(build_matcher, args, state['model'], path, state['setting'], 'cml_main.py')


def load_model_state(model, saved, path, setting):
    """Load state dict `saved` into `model`, naming mismatched keys if it does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    resized = [k for k in own if k in saved and own[k].shape != saved[k].shape]
    if missing or unexpected or resized:
        parts = []
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('different shape', resized)):
            if keys:
                more = f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''
                parts.append(f"{what}: {', '.join(keys[:3])}{more}")
        raise UserError(f"{path} does not fit the model it describes ({'; '.join(parts)}); it "
                        f'was saved by the {setting} setting; use an unmodified checkpoint '
                        'written by supv_main.py or weak_main.py')
    model.load_state_dict(saved)


@contextlib.contextmanager
def damaged_state(path):
    """Errors while restoring the training state of checkpoint `path` (the optimizer, the
    schedule, the random states, the history) become one line naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        raise UserError(f'{path} holds a training state that cannot be restored '
                        f'({type(e).__name__}: {str(e)[:100]}); resume from another '
                        'last.pth.tar or start afresh') from None


def rng_state(data_generator, ranks=None):
    """Every random state of the run, as tensors and plain values (no numpy arrays).
    `ranks`: under torchrun, every rank's dropout_state, rank 0's first."""
    name, keys, *rest = np.random.get_state()
    state = {'python': random.getstate(), 'numpy': (name, torch.from_numpy(keys.astype(np.int64)),
                                                    *rest),
             'torch': torch.get_rng_state(), 'data': data_generator.get_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    if ranks is not None and len(ranks) > 1:
        state['ranks'] = ranks
    return state


def dropout_state(device):
    """The state of the generator the model's dropout draws from on `device`."""
    return torch.cuda.get_rng_state(device) if device.type == 'cuda' else torch.get_rng_state()


def restore_training(state, path, optimizer, scheduler, data_generator, device, seed):
    """Continue resumed checkpoint `state` (at `path`): its optimizer, schedule and random
    states restored in this rank; returns (best, history, first epoch to train)."""
    with damaged_state(path):
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        restore_rng_state(state['rng'], data_generator, device, dist.rank(), dist.world(), seed)
    return state['best'], state['history'], state['epoch'] + 1


def restore_rng_state(state, data_generator, device, rank=0, world=1, seed=0):
    """Restore `state` in rank `rank` of `world` (1 without torchrun). Every rank takes the
    same order of videos. Under torchrun, rank r's dropout continues its saved stream when
    the checkpoint was written by as many ranks; otherwise rank 0 continues the saved
    stream and the other ranks start fresh ones (seed_rank)."""
    random.setstate(state['python'])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state['torch'])
    data_generator.set_state(state['data'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    if world > 1:
        ranks = state.get('ranks', [])
        # The saved states fit only as many ranks on the same kind of device (a CUDA
        # generator's state is not a CPU generator's).
        if len(ranks) == world and ranks[rank].shape == dropout_state(device).shape:
            if device.type == 'cuda':
                torch.cuda.set_rng_state(ranks[rank], device)
            else:
                torch.set_rng_state(ranks[rank])
        else:
            seed_rank(seed, rank)


def seed_rank(seed, rank):
    """Rank r > 0's own dropout stream under torchrun; rank 0 keeps the seed's stream, which
    is the single-process run's."""
    if rank > 0:
        torch.manual_seed(seed + 1_000_003 * rank)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)   # also seeds every CUDA device
