"""Checkpoints that survive crashes: atomic writes, RNG state, clear errors on load."""
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError

LAST = 'last.pth.tar'
BEST_PATTERN = 'model_epoch_{epoch}_top1_{acc:.3f}_task_{task}_best_model.pth.tar'
TASK_NAMES = {'supervised': 'Supervised', 'weak': 'WeaklySupervised'}
# atomic_write's temporary files are '.<name>.<random>.tmp'; a killed process leaves one.
TEMP_SUFFIX = '.tmp'


def best_name(epoch, acc, setting):
    return BEST_PATTERN.format(epoch=epoch, acc=acc, task=TASK_NAMES[setting])


def atomic_write(path, write):
    """Call write(file object) on a temp file next to `path`, fsync it, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a partial one.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=TEMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, 'wb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)   # make the rename itself durable
        finally:
            os.close(dir_fd)
    except OSError as e:   # a full disk, a vanished or read-only folder
        raise UserError(f'could not write {path} ({e.strerror or e}); the previous {path.name}, '
                        'if any, is intact; free disk space or choose another folder') from None


def save_checkpoint(state, path):
    atomic_write(path, lambda f: torch.save(state, f))


def write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode()))


def load_checkpoint(path):
    """The dict saved by save_checkpoint, on the CPU; a UserError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f'checkpoint {path} not found; pass --resume with a .pth.tar file from '
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


def load_model_state(model, state, path):
    """Load state['model'] into `model`, naming mismatched keys if it does not fit."""
    own = model.state_dict()
    saved = state['model']
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
        raise UserError(f"{path} does not fit this model ({'; '.join(parts)}); it was saved by "
                        f"the {state.get('setting', '?')} setting with its own model size; use "
                        'the matching script and config')
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
