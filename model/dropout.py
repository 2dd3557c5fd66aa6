"""Dropout with a cheaper random mask on the CPU, for AGTA's per-position tensors, applied
where it costs the fewest passes over memory.

torch's CPU dropout draws one random float per element. On AGTA's per-position tensors
(B x T x 49 x 512 after the visual input layer, B x T x 49 x 1280 inside MFB) that costs
more than the matrix product that made them. Here each element's keep/drop decision takes
16 random bits (four per 64-bit draw), so the drop probability is p rounded to a multiple
of 1/65536 (0.1 -> 0.100006); kept outputs are scaled by the exact 1 / (1 - that
probability), so their expectation is unchanged. On CUDA it is F.dropout, whose fused
kernel is already fast. The encoders' and DIMA's dropouts use it too (torch's CPU
bernoulli_ took 30 ms of a step on their B x T x 2048 feed-forward tensors); only the
attention weights' dropout inside torch's attention functions stays torch's.

The two places AGTA drops out are each one of these functions, which give what dropout of
the plain expression gives (up to float rounding) with fewer passes over the large tensor:

- linear_relu_dropout(x, linear, layer) = layer(relu(linear(x))): the scale folded into
  the layer's weights, the dropped elements zeroed before the ReLU (relu(0) = 0), both in
  place on the product's output.
- product_dropout(x, y, layer) = layer(x * y), y broadcast against x (MFB's audio factor,
  one per segment): the scale folded into the small factor, the zeros set in place.
"""
import torch
from torch import nn
import torch.nn.functional as F

_LEVELS = 1 << 16


def cpu_drop_mask(shape, p):
    """(dropped, scale): a bool tensor of `shape`, True where training-mode dropout of
    probability p zeroes the element (16 random bits each), and the factor of the rest."""
    dropped = round(p * _LEVELS)
    n = 1
    for size in shape:
        n *= size
    draws = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    drop = (draws.view(torch.int16)[:n] < dropped - _LEVELS // 2).view(shape)
    return drop, _LEVELS / (_LEVELS - dropped)


def _cheap(layer, x):
    """Whether `layer` (an nn.Dropout) drops out of CPU tensor `x` with the cheap mask."""
    return layer.training and layer.p > 0 and x.device.type == 'cpu'


def cpu_dropout(x, p):
    """Training-mode dropout of CPU tensor x with 16-bit mask resolution."""
    drop, scale = cpu_drop_mask(x.shape, p)
    return (x * scale).masked_fill_(drop, 0)


def linear_rows(x, weight, bias=None):
    """F.linear(x, weight, bias) as one product of x's rows: an (N, out) tensor of its own.

    F.linear of a tensor of more than two dimensions returns a view, and an in-place op on
    a view (the ReLUs and dropout zeros here) makes autograd copy the whole gradient in
    backward (CopySlices: 150 ms of a 2 s step on MFB's tensor alone). On the 2-D result
    those ops cost nothing extra; callers view it back once they are done."""
    return F.linear(x.reshape(-1, x.shape[-1]), weight, bias)


def relu_linear(x, linear):
    """relu(linear(x)) with the ReLU in place on the product, shaped as x (..., out); the
    module is called (on x's rows, see linear_rows), so the benchmark's profile sees it."""
    return torch.relu_(linear(x.reshape(-1, x.shape[-1]))).view(*x.shape[:-1], -1)


def linear_relu_dropout(x, linear, layer):
    """layer(relu(linear(x))) for nn.Linear `linear` and FastCPUDropout `layer`."""
    if not layer.training or layer.p == 0:
        out = linear_rows(x, linear.weight, linear.bias)
    elif not _cheap(layer, x):
        return layer(F.relu(F.linear(x, linear.weight, linear.bias)))
    else:
        drop, scale = cpu_drop_mask((x.numel() // x.shape[-1], linear.out_features), layer.p)
        out = linear_rows(x, linear.weight * scale, linear.bias * scale).masked_fill_(drop, 0)
    return torch.relu_(out).view(*x.shape[:-1], -1)


def product_dropout(x, y, layer):
    """layer(x * y) for FastCPUDropout `layer`, y broadcast against x (and no larger)."""
    if not _cheap(layer, x):
        return layer(x * y)
    drop, scale = cpu_drop_mask(x.shape, layer.p)
    return (x * (y * scale)).masked_fill_(drop, 0)


class FastCPUDropout(nn.Dropout):
    """nn.Dropout, with `cpu_dropout` for CPU tensors in training mode."""

    def forward(self, x):
        if _cheap(self, x):
            return cpu_dropout(x, self.p)
        return F.dropout(x, self.p, self.training)


class LinearReLUDropout(nn.Linear):
    """dropout(relu(linear(x))) as linear_relu_dropout computes it; its parameters are those
    of the nn.Linear it is (the same names in a checkpoint)."""

    def __init__(self, in_features, out_features, p):
        super().__init__(in_features, out_features)
        self.dropout = FastCPUDropout(p)

    def forward(self, x):
        return linear_relu_dropout(x, self, self.dropout)
