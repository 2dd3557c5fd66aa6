"""The device and torch's global settings of a run."""
import os

import torch

from core.errors import UserError
from utils.memory import reuse_freed_memory


def resolve_device(name, flag='--device'):
    """torch.device for 'auto', 'cpu', 'cuda' or 'cuda:N'; a UserError if it is not here."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda'):
        if not torch.cuda.is_available():
            raise UserError(f'{flag} {name}: no CUDA device is available here; use {flag} cpu '
                            f'or {flag} auto')
        index = int(name.split(':')[1]) if ':' in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f'{flag} {name}: only {torch.cuda.device_count()} CUDA device(s) '
                            'here; use cuda:0 .. cuda:N-1')
    return torch.device(name)


def configure_torch(cfg):
    """Thread count and determinism, from the config."""
    if cfg['num_threads']:
        torch.set_num_threads(cfg['num_threads'])
    if cfg['deterministic']:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def keep_freed_memory(cfg, device):
    """With --reuse_memory on the CPU, keep freed memory for reuse (see utils/memory.py).

    Called after the data are loaded, so that loading keeps its lower peak."""
    if device.type == 'cpu' and cfg['reuse_memory']:
        reuse_freed_memory()
