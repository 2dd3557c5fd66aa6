"""DMIN: the DIMA closed form, shapes, gradient flow and the prediction rule."""
import pytest
import torch

from model import DMIN, build_criterion, count_parameters
from model.criterion import total_loss
from model.dima import DenseAttention, dense_scores
from model.heads import MILBranch, predict_segments
from utils.config import default_config

SMALL = dict(d_model=32, n_heads=4, ff_dim=64, encoder_layers=1, agta_hidden=32, mfb_factor=2)


def shift_scores(q, k, lam):
    """DIMA's definition: weighted average over the D circular channel shifts of q against k."""
    D = q.shape[-1]
    total = torch.zeros(q.shape[:-1] + (k.shape[-2],), dtype=q.dtype)
    for m in range(D):
        w = lam if m == 0 else (1 - lam) / (D - 1)
        shifted = torch.roll(q, shifts=-m, dims=-1)          # shifted[c] = q[(c + m) mod D]
        total += w * shifted @ k.transpose(-1, -2)
    return total / D


@pytest.mark.parametrize('lam', [0.5, 0.0, 0.9])
def test_dense_scores_closed_form_equals_shift_definition(lam):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 10, 64, generator=g, dtype=torch.float64)
    k = torch.randn(2, 4, 10, 64, generator=g, dtype=torch.float64)
    torch.testing.assert_close(dense_scores(q, k, lam), shift_scores(q, k, lam))


def test_dense_attention_uses_dense_cross_and_plain_self_scores():
    torch.manual_seed(0)
    attn = DenseAttention(d_model=32, n_heads=4, lam=0.5, dropout=0.0).double().eval()
    query = torch.randn(3, 10, 32, dtype=torch.float64)
    cross = torch.randn(3, 10, 32, dtype=torch.float64)
    # Reference: explicit shift-averaged scores for cross keys, dot products for self keys.
    memory = torch.cat([cross, query], 1)
    q = attn.heads(attn.q_proj(query)) * attn.head_dim ** -0.5
    k, v = attn.heads(attn.k_proj(memory)), attn.heads(attn.v_proj(memory))
    scores = torch.cat([shift_scores(q, k[:, :, :10], 0.5), q @ k[:, :, 10:].transpose(-1, -2)], -1)
    ref = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(query, cross), ref)


@pytest.mark.parametrize('setting, keys', [
    ('supervised', {'relevance': (4, 10), 'category': (4, 28), 'udl': (4, 28)}),
    ('weak', {'relevance': (4, 10), 'category': (4, 29), 'video_score': (4, 29),
              'visual_video_score': (4, 29)}),
])
def test_output_shapes_and_float32(setting, keys):
    model = DMIN(setting, **SMALL)
    out = model(torch.rand(4, 10, 128), torch.rand(4, 10, 7, 7, 512))
    assert {k: tuple(v.shape) for k, v in out.items()} == keys
    assert all(v.dtype == torch.float32 for v in out.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    pred = model.predict(out)
    assert pred.shape == (4, 10) and pred.dtype == torch.int64
    assert ((pred >= 0) & (pred <= 28)).all()


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_every_parameter_gets_a_gradient(setting):
    torch.manual_seed(0)
    cfg, _ = default_config(setting)
    model = DMIN(setting, **SMALL)
    criterion = build_criterion(cfg, setting)
    segment = torch.full((4, 10), 28)
    segment[:, 2:8] = torch.tensor([3, 5, 7, 9]).unsqueeze(1)
    targets = {'segment': segment, 'video_class': torch.tensor([3, 5, 7, 9]),
               'video_label': torch.nn.functional.one_hot(torch.tensor([3, 5, 7, 28]), 29).float()}
    terms = criterion(model(torch.rand(4, 10, 128), torch.rand(4, 10, 7, 7, 512)), targets)
    assert set(terms) == set(criterion.weight_dict)
    total_loss(terms, criterion.weight_dict).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_full_size_parameter_count_matches_the_paper():
    for setting in ('supervised', 'weak'):
        cfg, _ = default_config(setting)
        n = count_parameters(DMIN(setting, **{k: cfg[k] for k in SMALL}))
        assert 11.2e6 < n < 11.6e6   # DMIN_SPEC section 8: about 11.4 M parameters


def test_prediction_rule_event_gets_video_class_background_otherwise():
    relevance = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    category = torch.tensor([[0.1, 0.9, 0.3] + [0.0] * 25])
    assert predict_segments(relevance, category).tolist() == [[1, 28, 1, 28]]


def test_mil_branch_pools_max_over_time_then_softmax():
    branch = MILBranch(d_model=2)
    with torch.no_grad():
        branch.relevance.weight.copy_(torch.tensor([[1.0, 0.0]]))
        branch.relevance.bias.zero_()
        branch.category.weight.zero_()
        branch.category.bias.copy_(torch.arange(29, dtype=torch.float32) / 29)
    x = torch.tensor([[[0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]]])     # (1, T=3, 2)
    relevance, category, video = branch(x)
    seg = torch.sigmoid(relevance)[0, :, None] * category[0]       # (T, 29)
    torch.testing.assert_close(video[0], torch.softmax(seg.max(0).values, -1))
    assert relevance[0].tolist() == [0.0, 2.0, -1.0]


def test_confidence_is_probability_of_the_chosen_label():
    from model.heads import segment_confidence
    relevance = torch.tensor([[2.0, -1.0]])
    category = torch.tensor([[0.0, 1.0] + [0.0] * 26])
    p_class = torch.softmax(category, -1).max()
    expected = torch.tensor([[torch.sigmoid(torch.tensor(2.0)) * p_class,
                              1 - torch.sigmoid(torch.tensor(-1.0))]])
    torch.testing.assert_close(segment_confidence(relevance, category), expected)
