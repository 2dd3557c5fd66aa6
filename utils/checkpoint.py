"""Checkpoints that survive crashes: atomic writes, RNG state, and the one loader of a model.

A checkpoint is a dict saved with torch.save: 'setting', 'epoch', 'model' (the state dict),
'model_args' (what DMIN was built with: the setting, the data's sizes and the model keys of
the config), 'config' (the run's whole config) and, in last.pth.tar, what resuming needs:
'optimizer', 'scheduler', 'rng', 'best' and 'history'.
"""
import random
from pathlib import Path

import numpy as np
import torch

from core.atomic import atomic_write
from core.errors import UserError
from dataset.layout import AVE_SIZES
from model.dmin import DATA_KEYS, MODEL_KEYS, SETTINGS, build_model

LAST = 'last.pth.tar'
BEST_PATTERN = 'model_epoch_{epoch}_top1_{acc:.3f}_task_{task}_best_model.pth.tar'
BEST_GLOB = 'model_epoch_*_best_model.pth.tar'
TASK_NAMES = {'supervised': 'Supervised', 'weak': 'WeaklySupervised'}
SCRIPTS = {'supervised': ('supv_train.sh', 'supv_test.sh'), 'weak': ('weak_train.sh', 'weak_test.sh')}


def best_name(epoch, acc, setting):
    return BEST_PATTERN.format(epoch=epoch, acc=acc, task=TASK_NAMES[setting])


def save_checkpoint(state, path):
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, flag='--resume'):
    """The dict saved by save_checkpoint, on the CPU; a UserError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f'checkpoint {path} not found; pass {flag} with a .pth.tar file from '
                        'a run folder (--snapshot_pref)')
    try:
        state = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:   # a damaged file fails anywhere in zip, pickle or tensor decoding
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f'checkpoint {path} is corrupt or not a PyTorch checkpoint '
                        f'({reason}); use another checkpoint of the run') from None
    if not isinstance(state, dict) or 'model' not in state or 'config' not in state:
        raise UserError(f'{path} is not a DMIN checkpoint of this repository (no model/config '
                        'inside); use a checkpoint written by supv_main.py or weak_main.py')
    return state


def saved_model_args(state, path):
    """The model_args a checkpoint was built with; for one written before they were stored
    (all of which were trained on the AVE release), the setting, the AVE release's sizes and
    the model keys of its config."""
    if 'model_args' in state:
        return dict(state['model_args'])
    missing = [k for k in MODEL_KEYS if k not in state['config']]
    if missing:
        raise UserError(f"{path} has no model config ({', '.join(missing)} missing); use a "
                        'checkpoint written by supv_main.py or weak_main.py')
    return {'setting': state.get('setting'), **AVE_SIZES,
            **{k: state['config'][k] for k in MODEL_KEYS}}


def check_setting(state, setting, path, fix=None):
    """Refuse a checkpoint of the other setting, naming `fix` (default: the scripts that
    take it)."""
    saved = state.get('setting')
    if saved not in SETTINGS:
        raise UserError(f'{path} names no DMIN setting ({saved!r}); use a checkpoint written '
                        'by supv_main.py or weak_main.py')
    if setting is not None and saved != setting:
        train_sh, test_sh = SCRIPTS[saved]
        raise UserError(f'{path} was saved by the {saved} setting, not {setting}; '
                        f"{fix or f'use {train_sh} / {test_sh} for it'}")


def model_from_checkpoint(state, path, sizes=None):
    """The one way from a checkpoint to a model: DMIN rebuilt from the checkpoint's
    model_args, with its weights (on the CPU). With `sizes` (the data's {num_classes,
    audio_dim, visual_dim}), a checkpoint trained on data of other sizes is refused."""
    args = saved_model_args(state, path)
    for key in DATA_KEYS if sizes is not None else ():
        if args[key] != sizes[key]:
            raise UserError(f'{path} was trained on data with {key} {args[key]}, but these data '
                            f'have {sizes[key]}; use a checkpoint trained on data of this shape')
    try:
        model = build_model(args)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f'{path} holds model arguments this DMIN cannot be built from ({e}); '
                        'use a checkpoint written by supv_main.py or weak_main.py') from None
    load_model_state(model, state['model'], path, args['setting'])
    return model


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


def rng_state(data_generator):
    state = {'python': random.getstate(), 'numpy': np.random.get_state(),
             'torch': torch.get_rng_state(), 'data': data_generator.get_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state, data_generator):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    data_generator.set_state(state['data'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)   # also seeds every CUDA device
