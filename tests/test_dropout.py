"""model.dropout: a cheaper CPU mask with the statistics and gradients of dropout."""
import torch

from model.dropout import FastCPUDropout, cpu_dropout


def test_drop_rate_and_expectation():
    torch.manual_seed(0)
    x = torch.ones(4_000_000)
    y = cpu_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 6554 / 65536) < 1e-3          # p rounded to 16 bits
    assert abs(y.mean().item() - 1.0) < 2e-3           # expectation kept by the scale
    assert torch.allclose(y[y != 0], torch.tensor(65536 / (65536 - 6554)))


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(3, 1001, requires_grad=True)
    y = cpu_dropout(x, 0.2)
    y.backward(torch.ones_like(y))
    kept = y != 0
    scale = 65536 / (65536 - round(0.2 * 65536))
    assert torch.equal(x.grad, kept.float() * scale)
    torch.testing.assert_close(y[kept], x[kept] * scale)


def test_seeded_eval_and_zero_p():
    layer = FastCPUDropout(0.3)
    x = torch.randn(2, 5, 7)
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    assert torch.equal(a, layer(x))                     # follows torch's seed (exact resume)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(FastCPUDropout(0.0).train()(x), x)
