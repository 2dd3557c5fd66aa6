"""FastCPUDropout: dropout with a cheaper random mask on the CPU, for the per-position tensors.

torch's CPU dropout draws one random float per element. On AGTA's per-position tensors
(B x T x 49 x 512 after the visual input layer, B x T x 49 x 1280 inside MFB) that costs
more than the matrix product that made them; using this class there saves about a tenth of
a CPU training step. Each element's keep/drop decision takes 16 random bits (four per
64-bit draw), so the drop probability is p rounded to a multiple of 1/65536
(0.1 -> 0.100006); outputs are scaled by the exact 1 / (1 - that probability), so their
expectation is unchanged. On CUDA it is F.dropout, whose fused kernel is already fast.
Everywhere else (encoders, DIMA, fusion: tensors of B x T x 256) the model uses torch's own.
"""
import torch
from torch import nn
import torch.nn.functional as F

_LEVELS = 1 << 16


class _MaskedScale(torch.autograd.Function):
    """x * keep * scale, saving only the boolean mask for the backward pass."""

    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x * scale, 0)

    @staticmethod
    def backward(ctx, grad):
        keep, = ctx.saved_tensors
        return torch.where(keep, grad * ctx.scale, 0), None, None


def cpu_dropout(x, p):
    """Training-mode dropout of CPU tensor x with 16-bit mask resolution."""
    dropped = round(p * _LEVELS)
    n = x.numel()
    draws = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    keep = (draws.view(torch.int16)[:n] >= dropped - _LEVELS // 2).view(x.shape)
    return _MaskedScale.apply(x, keep, _LEVELS / (_LEVELS - dropped))


class FastCPUDropout(nn.Dropout):
    """nn.Dropout, with `cpu_dropout` for CPU tensors in training mode."""

    def forward(self, x):
        if self.training and self.p > 0 and x.device.type == 'cpu':
            return cpu_dropout(x, self.p)
        return F.dropout(x, self.p, self.training)
