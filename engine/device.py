"""The device and torch's global settings of a run, and what to do when memory runs out."""
import contextlib
import os

import torch

from core.errors import UserError
from engine.config import DEVICE_NAME
from engine.memory import reuse_freed_memory


def resolve_device(name, flag='--device'):
    """torch.device for 'auto', 'cpu', 'cuda' or 'cuda:N'; a UserError if it is not here."""
    if not DEVICE_NAME.fullmatch(name):
        raise UserError(f'{flag} {name!r} is invalid: use auto, cpu, cuda or cuda:N')
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
    """With --reuse_memory on the CPU, keep freed memory for reuse (see engine/memory.py).

    Called after the data are loaded, so that loading keeps its lower peak."""
    if device.type == 'cpu' and cfg['reuse_memory']:
        reuse_freed_memory()


@contextlib.contextmanager
def allocation_errors(settings):
    """A failed allocation inside the block (on the CPU or the GPU) becomes one line that
    says which `settings` to lower."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as e:
        reason = (str(e).splitlines() or ['out of memory'])[0][:160]
        raise UserError(f'out of memory ({reason}); lower {settings}') from None
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and 'out of memory' not in str(e):
            raise
        raise UserError(f'out of memory ({str(e).splitlines()[0][:160]}); lower '
                        f'{settings}') from None


def free_memory(device):
    """Bytes free for the features on `device`: the GPU's free memory, or the machine's
    available memory (MemAvailable of /proc/meminfo) on the CPU; None where unknown."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
