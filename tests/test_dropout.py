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


def test_each_fused_dropout_equals_dropout_of_its_expression():
    """linear_relu_dropout and product_dropout against FastCPUDropout of the plain
    expression, with the same draws: values and gradients (float64: rounding aside)."""
    from model.dropout import linear_relu_dropout, product_dropout
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 9).double()
    layer = FastCPUDropout(0.3).train()
    x = torch.randn(4, 5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 1, 9, dtype=torch.float64, requires_grad=True)
    cases = [(lambda: linear_relu_dropout(x, linear, layer),
              lambda: layer(torch.relu(linear(x))), [x, *linear.parameters()]),
             (lambda: product_dropout(linear(x), y, layer),
              lambda: layer(linear(x) * y), [x, y, *linear.parameters()])]
    for fused, plain, inputs in cases:
        results = []
        for f in (fused, plain):
            torch.manual_seed(5)
            out = f()
            results.append((out, torch.autograd.grad((out * out.detach()).sum(), inputs)))
        (a, grads_a), (b, grads_b) = results
        assert (b == 0).any() and (b != 0).any()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        for ga, gb in zip(grads_a, grads_b):
            torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)


def plain_agta(agta, visual, audio):
    """AGTA's forward as its plain expressions, every dropout a FastCPUDropout call: what
    model/agta.py computed before its dropouts were fused with their neighbours."""
    F = torch.nn.functional
    linear = agta.visual_input
    v = linear.dropout(F.relu(F.linear(visual.flatten(2, 3), linear.weight, linear.bias)))
    v = agta.channel(v, audio)
    mfb = agta.spatial
    z = mfb.dropout(F.relu(mfb.visual_proj(v)) * F.relu(mfb.audio_proj(audio)).unsqueeze(2))
    z = torch.sqrt(F.relu(z.unflatten(-1, (-1, mfb.factor)).sum(-1)))
    code = agta.temporal(v, audio) + F.normalize(z, dim=-1)
    weights = torch.softmax(torch.tanh(agta.score(code)), dim=2)
    return (weights.transpose(2, 3) @ v).squeeze(2)


def test_fused_dropouts_equal_the_plain_expressions():
    """The same weights and the same random draws (the masks are drawn in the same order):
    AGTA's output and every gradient agree to float rounding. Checked in float64, where
    rounding is out of the way: in float32 the outputs agree to 4e-7 (of 1.8, full-size
    AGTA, batch 4), but MFB's square root near 0 makes some of its projection's gradient
    elements ill-conditioned (a few hundred of 655,360 differ by up to 3%, as they would
    between any two orders of the same sums)."""
    from model.agta import AGTA
    torch.manual_seed(0)
    agta = AGTA(16, 24, 8, 3, input_dropout=0.2, mfb_dropout=0.1).train().double()
    visual = torch.rand(3, 5, 4, 4, 24, dtype=torch.float64)
    audio = torch.rand(3, 5, 16, dtype=torch.float64)
    outputs, grads = [], []
    for forward in (agta, lambda v, a: plain_agta(agta, v, a)):
        torch.manual_seed(7)
        out = forward(visual, audio)
        outputs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), list(agta.parameters())))
    fused, plain = outputs
    assert (fused - plain).abs().max() <= 1e-12 * plain.abs().max()
    for (name, _), a, b in zip(agta.named_parameters(), *grads):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max() + 1e-15, name
    torch.manual_seed(8)
    assert not torch.allclose(plain_agta(agta, visual, audio), plain)   # the masks matter
