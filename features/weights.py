"""Pretrained weights for the feature networks: found, downloaded and checked.

A weights file is data, never code: PyTorch files load with `weights_only=True`, Keras files
are read with h5py. Whatever does not fit the network (a missing layer, a shape, not a
weights file at all) is one UserError naming the file. Downloads go to the torch hub cache
(`torch.hub.get_dir()/checkpoints`, or $TORCH_HOME) and are used from there afterwards.
"""
import textwrap
from pathlib import Path

import torch

from core.errors import UserError
from core.files import torch_file_kind


def cached_download(url, flag, hash_prefix=None):
    """The local path of `url` in the torch hub cache, downloading it on first use."""
    folder = Path(torch.hub.get_dir()) / 'checkpoints'
    path = folder / url.rsplit('/', 1)[1]
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        print(f'downloading {url} -> {path}')
        # It writes a temporary file and renames it when the download (and its hash) is whole.
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=True)
    except (OSError, RuntimeError, ValueError) as e:   # URLError is an OSError
        raise UserError(f'{flag}: could not download {url} ({e}); download it on a machine '
                        f'with internet and pass its path with {flag}, or use --weights random '
                        'to try the pipeline without pretrained weights') from None
    return path


def load_state_dict(path, flag):
    """A PyTorch state dict (name -> tensor) from `path`, loaded as data only."""
    try:
        kind = torch_file_kind(path)
    except FileNotFoundError:
        raise UserError(f'{flag} {path} not found; give the path of a weights file') from None
    if kind != 'torch':
        raise UserError(f'{flag} {path} is not a weights file (it is {kind}); give a .pth file '
                        'of PyTorch weights')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:   # pickle, zip and weights_only refusals all land here
        reason = textwrap.shorten(' '.join(str(e).split()) or type(e).__name__, 160,
                                  placeholder=' ...')
        raise UserError(f'{flag} {path} is not a PyTorch weights file that loads as plain '
                        f'tensors ({reason})') from None
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f'{flag} {path} holds no state dict of tensors')
    return state


def fill(module, state, path, flag, network):
    """Copy `state` (name -> tensor) into `module`'s parameters, which must match it exactly
    by name and shape; anything else is one UserError saying what differs."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f'{flag} {path} is not {network} weights: it lacks {missing[0]}'
                        f'{f" and {len(missing) - 1} more" if len(missing) > 1 else ""}')
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise UserError(f'{flag} {path} does not fit {network}: {name} has shape '
                            f'{tuple(state[name].shape)}, the network needs {tuple(tensor.shape)}')
        if not state[name].is_floating_point() or not torch.isfinite(state[name]).all():
            raise UserError(f'{flag} {path}: {name} is not finite floating-point weights')
    module.load_state_dict({k: state[k].float() for k in own})
    return module
