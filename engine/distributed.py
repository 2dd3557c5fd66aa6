"""Training on several processes with torchrun: which part of a batch is this rank's, and
the few collectives the loops need.

torchrun starts one process per GPU (or per CPU share) and sets RANK, WORLD_SIZE and
LOCAL_RANK. `setup` joins them into one process group: NCCL on CUDA, gloo on the CPU.
Every rank draws the same order of videos; each global batch is cut into one contiguous
part per rank, so the batch size stays the global batch. Without torchrun every function
here is the single-process identity: world 1, rank 0, nothing communicated.
"""
import contextlib
import ctypes
import datetime
import os
import re
import signal

import torch
import torch.distributed as dist

from core.errors import LAUNCHER_ENV, UserError

PR_SET_PDEATHSIG = 1   # prctl(2): the signal this process gets when its parent dies
RUN_FOLDER = 'run_folder'   # in tools/torchrun.py's folder: rank 0 writes its run folder there


def launched():
    """Whether torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def setup(device):
    """Join the process group of a torchrun launch; returns this rank's device (the local
    GPU on CUDA). Does nothing outside torchrun."""
    if not launched() or dist.is_initialized():
        return device
    local = int(os.environ.get('LOCAL_RANK', '0'))
    if device.type == 'cuda':
        if local >= torch.cuda.device_count():
            raise UserError(f'torchrun started local rank {local}, but only '
                            f'{torch.cuda.device_count()} CUDA device(s) are here; lower '
                            '--nproc_per_node (NPROC=) to the number of GPUs')
        device = torch.device('cuda', local)
        torch.cuda.set_device(device)
    stop_with_launcher()
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                            device_id=device if device.type == 'cuda' else None)
    return device


def stop_with_launcher():
    """Ask Linux for a SIGINT when the launcher (torchrun's agent, this process's parent)
    dies, e.g. by kill -9: the rank then stops as on Ctrl-C instead of training on alone.
    Elsewhere (no prctl) nothing changes."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGINT))
    except (OSError, AttributeError):
        pass


def tell_launcher(folder):
    """Under tools/torchrun.py, leave the path of run folder `folder` where the launcher
    looks for it (for its line when a process is killed)."""
    where = os.environ.get(LAUNCHER_ENV)
    if where and os.path.isdir(where) and rank() == 0:
        with open(os.path.join(where, RUN_FOLDER), 'w') as f:
            f.write(os.path.abspath(folder))


def peer_gone(error):
    """Whether RuntimeError `error`, met under torchrun, is the transport's report that
    another process of the run is gone (gloo or NCCL: a closed or reset connection)."""
    text = str(error)
    return world() > 1 and any(w in text for w in (
        'gloo', 'NCCL', 'Connection reset', 'Connection closed', 'Broken pipe'))


def transport_reason(error):
    """The transport's own words, without its source location and advice."""
    line = (str(error).splitlines() or [type(error).__name__])[0]
    line = re.sub(r'^\[[^\]]*\] ', '', line)
    return line.split('. This is typically')[0][:160]


def cleanup():
    """Leave the process group. Best effort: when the run stops because a peer or the
    launcher (which holds the rendezvous store) is gone, leaving it can fail too, and that
    must not replace the line that says why the run stopped."""
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def world():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def local_world():
    """Processes of this launch on this machine (they share its memory)."""
    return int(os.environ.get('LOCAL_WORLD_SIZE', '1')) if dist.is_initialized() else 1


def wrap(net, device):
    """`net` itself in one process; under torchrun, in DistributedDataParallel, which averages
    the ranks' gradients after every backward pass."""
    if world() == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == 'cuda'
                                   else None)


def describe(batch_size):
    """' on N processes (global batch B)' under torchrun, else nothing: for the run's log."""
    return f' on {world()} processes (global batch {batch_size})' if world() > 1 else ''


def part(rows):
    """This rank's contiguous part of `rows` (all of them in one process)."""
    return rows.tensor_split(world())[rank()] if world() > 1 else rows


def all_sum(tensor):
    """The sum of `tensor` over the ranks (in place; the tensor itself in one process)."""
    if world() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_max(tensor):
    if world() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def gather_parts(tensor, total):
    """Every rank's `part` of a split's results, concatenated in split order on every rank
    (the parts differ in length by at most one row, so each is padded to the longest)."""
    if world() == 1:
        return tensor
    sizes = [len(p) for p in torch.arange(total).tensor_split(world())]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[:len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def gather_tensors(tensor, device):
    """[rank 0's tensor, rank 1's, ...] of a same-shaped tensor, on the CPU (sent through
    `device`, the rank's device: NCCL moves only CUDA tensors)."""
    if world() == 1:
        return [tensor]
    moved = tensor.to(device)
    parts = [torch.empty_like(moved) for _ in range(world())]
    dist.all_gather(parts, moved)
    return [p.cpu() for p in parts]
