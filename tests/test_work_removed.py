"""The work removed from DMIN's training step (docs/performance.md) changes no result: each
faster form against the plain expression it replaces, on the same weights, values and
gradients (float64, so that only rounding can differ: the bounds are stated)."""
import dataclasses

import torch
from torch import nn

from dataset.layout import AVE
from engine.config import default_config
from model import build_model, model_args
import model.bilstm as bilstm
from model.bilstm import concat_bilstm, split_audio_bilstm
from model.dropout import FastCPUDropout, relu_linear


def values_and_grads(fn, inputs, seed=0):
    torch.manual_seed(seed)
    out = fn()
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    return out, torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True,
                                    materialize_grads=True)


def max_difference(a, b):
    (out_a, grads_a), (out_b, grads_b) = a, b
    return max((x - y).abs().max().item() for x, y in zip((out_a, *grads_a), (out_b, *grads_b)))


def test_the_first_layer_s_audio_half_once_per_segment_is_the_lstm_on_the_concatenation():
    torch.manual_seed(0)
    lstm = nn.LSTM(2 * 12, 5, num_layers=2, batch_first=True, bidirectional=True).double()
    pv = torch.rand(3, 4, 10, 12, dtype=torch.float64, requires_grad=True)
    pa = torch.rand(3, 10, 12, dtype=torch.float64, requires_grad=True)
    inputs = [pv, pa, *lstm.parameters()]
    split = values_and_grads(lambda: split_audio_bilstm(lstm, pv, pa), inputs)
    plain = values_and_grads(lambda: concat_bilstm(lstm, pv, pa), inputs)
    assert split[0].shape == (3, 4, 10, 10)
    assert max_difference(split, plain) < 1e-13          # measured 1.4e-14 at AGTA's sizes


def test_dmin_trains_the_same_with_the_work_removed():
    """A whole DMIN (both settings), training mode with dropout, float64: the CPU forms
    (split BiLSTM, fused dropouts, in-place ReLUs) against the same model with the plain
    LSTM, for the same draws; and the backward graph has no CopySlices (an in-place op on
    a view, which would copy the whole gradient)."""
    for setting in ('supervised', 'weak'):
        cfg = default_config(setting)[0]
        layout = dataclasses.replace(AVE, visual_shape=(3, 3, 16), audio_dim=8)
        cfg = dict(cfg, d_model=16, ff_dim=32, agta_hidden=8)
        torch.manual_seed(0)
        model = build_model(model_args(setting, layout, cfg)).double().train()
        audio = torch.rand(2, 10, 8, dtype=torch.float64)
        visual = torch.rand(2, 10, 3, 3, 16, dtype=torch.float64)
        params = list(model.parameters())

        def outputs():
            return torch.cat([out.flatten() for out in model(audio, visual).values()])

        fast = values_and_grads(outputs, params)
        seen, stack = set(), [fast[0].grad_fn]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            assert 'CopySlices' not in type(node).__name__
            stack.extend(n for n, _ in node.next_functions)
        saved = bilstm.split_audio_bilstm
        bilstm.split_audio_bilstm = concat_bilstm       # the plain LSTM, as on CUDA
        try:
            plain = values_and_grads(outputs, params)
        finally:
            bilstm.split_audio_bilstm = saved
        assert max_difference(fast, plain) < 1e-12, setting
        model.eval()                                     # and evaluation, without dropout
        with torch.no_grad():
            fast = outputs()
            bilstm.split_audio_bilstm = concat_bilstm
            try:
                plain = outputs()
            finally:
                bilstm.split_audio_bilstm = saved
        assert (fast - plain).abs().max() < 1e-12, setting


def test_relu_linear_is_relu_of_linear_shaped_as_its_input():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    inputs = [x, *linear.parameters()]
    fast = values_and_grads(lambda: relu_linear(x, linear), inputs)
    plain = values_and_grads(lambda: torch.relu(linear(x)), inputs)
    assert fast[0].shape == (2, 3, 5, 4)
    assert max_difference(fast, plain) < 1e-15


def test_the_encoders_dropouts_use_the_cheap_mask():
    cfg = default_config('supervised')[0]
    model = build_model(model_args('supervised', AVE, cfg))
    for encoder in (model.visual_encoder, model.audio_encoder):
        for layer in encoder.layers.layers:
            assert all(isinstance(getattr(layer, name), FastCPUDropout)
                       for name in ('dropout', 'dropout1', 'dropout2'))
    assert isinstance(model.visual_decoder.dropout, FastCPUDropout)
