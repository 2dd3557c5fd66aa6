"""Training on several processes with torchrun: which part of a batch is this rank's, and
the few collectives the loops need.

torchrun starts one process per GPU (or per CPU share) and sets RANK, WORLD_SIZE and
LOCAL_RANK. `setup` joins them into one process group: NCCL on CUDA, gloo on the CPU.
Every rank draws the same order of videos; each global batch is cut into one contiguous
part per rank, so the batch size stays the global batch. Without torchrun every function
here is the single-process identity: world 1, rank 0, nothing communicated.
"""
import datetime
import os

import torch
import torch.distributed as dist

from core.errors import UserError


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
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                            device_id=device if device.type == 'cuda' else None)
    return device


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()


def world():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def local_world():
    """Processes of this launch on this machine (they share its memory)."""
    return int(os.environ.get('LOCAL_WORLD_SIZE', '1')) if dist.is_initialized() else 1


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


def barrier():
    if world() > 1:
        dist.barrier()
