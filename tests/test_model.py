"""DMIN, part by part, against direct re-computations of its definitions (docs/model.md);
shapes, gradients, sizes from the arguments, and the parameter counts."""
import inspect

import pytest
import torch
import torch.nn.functional as F

from dataset.layout import AVE, DataSpec
from model import build_model, count_parameters, model_args
from model.dmin import DMIN, MODEL_KEYS
from model.agta import AGTA, ChannelAttention, SpatialMFB, TemporalAttention
from model.criterion import total_loss
from model.dima import DenseAttention
from model.fusion import AudioVisualFusion
from model.heads import MILBranch, predict_segments, segment_confidence
from tests.helpers import SMALL_MODEL, build
from engine.config import default_config

B, T, P, A, V = 2, 4, 6, 5, 12     # batch, segments, positions, audio and visual widths


def inputs(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)),
                       dtype=torch.float64)


# ----------------------------------------------------------------------------- AGTA

def test_channel_attention_weights_the_map_by_one_plus_audio_guided_weights():
    torch.manual_seed(0)
    channel = ChannelAttention(A, V, 8).double()
    v, audio = inputs(B, T, P, V), inputs(B, T, A)
    a = F.relu(channel.audio_proj(audio))                                     # (B, T, V)
    joint = (F.relu(channel.visual_proj(v)) * a[:, :, None]).mean(2)          # mean over P
    w = torch.sigmoid(channel.excite(F.relu(channel.squeeze(joint))))         # (B, T, V)
    torch.testing.assert_close(channel(v, audio), v * (1 + w[:, :, None]))


def test_mfb_sums_groups_of_consecutive_channels_then_signed_root_and_l2_norm():
    torch.manual_seed(0)
    mfb = SpatialMFB(A, V, out_dim=3, factor=4, dropout=0.1).double().eval()
    v, audio = inputs(B, T, P, V), inputs(B, T, A)
    product = F.relu(mfb.visual_proj(v)) * F.relu(mfb.audio_proj(audio))[:, :, None]  # (.., 12)
    grouped = torch.stack([product[..., 4 * o:4 * o + 4].sum(-1) for o in range(3)], -1)
    rooted = grouped.sign() * grouped.abs().sqrt()
    expected = rooted / rooted.norm(dim=-1, keepdim=True)
    got = mfb(v, audio)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(B, T, P, dtype=torch.float64))


def test_temporal_attention_runs_one_bilstm_per_position_over_the_segments():
    torch.manual_seed(0)
    temporal = TemporalAttention(A, V, hidden=8).double()
    v, audio = inputs(B, T, P, V), inputs(B, T, A)
    pa = F.relu(temporal.audio_proj(audio))                                   # (B, T, 8)
    for p in range(P):
        pv = F.relu(temporal.visual_proj(v[:, :, p]))                         # (B, T, 8)
        # the definition: the plain nn.LSTM (which the module is) on the concatenation
        expected, _ = torch.nn.LSTM.forward(temporal.lstm, torch.cat([pv + pa, pa], -1))
        torch.testing.assert_close(temporal(v, audio)[:, :, p], expected)


def test_agta_softmax_over_positions_pools_the_channel_attended_map():
    torch.manual_seed(0)
    agta = AGTA(A, V, hidden=8, mfb_factor=2, input_dropout=0.2, mfb_dropout=0.1).double().eval()
    visual, audio = inputs(B, T, 2, 3, V), inputs(B, T, A)                    # a 2 x 3 map
    v = agta.channel(F.relu(agta.visual_input(visual.flatten(2, 3))), audio)  # (B, T, P, V)
    code = agta.temporal(v, audio) + agta.spatial(v, audio)
    weights = torch.softmax(torch.tanh(agta.score(code)).squeeze(-1), dim=2)  # over P
    torch.testing.assert_close(weights.sum(2), torch.ones(B, T, dtype=torch.float64))
    torch.testing.assert_close(agta(visual, audio), (weights[..., None] * v).sum(2))


# ----------------------------------------------------------------------------- DIMA, fusion

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
def test_dense_attention_uses_shift_averaged_cross_and_plain_self_scores(lam):
    torch.manual_seed(0)
    attn = DenseAttention(d_model=32, n_heads=4, lam=lam, dropout=0.0).double().eval()
    query = torch.randn(3, 10, 32, dtype=torch.float64)
    cross = torch.randn(3, 10, 32, dtype=torch.float64)
    memory = torch.cat([cross, query], 1)
    q = attn.heads(attn.q_proj(query)) * attn.head_dim ** -0.5
    k, v = attn.heads(attn.k_proj(memory)), attn.heads(attn.v_proj(memory))
    scores = torch.cat([shift_scores(q, k[:, :, :10], lam), q @ k[:, :, 10:].transpose(-1, -2)], -1)
    ref = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(query, cross), ref)


def test_fusion_attends_from_the_product_over_both_sequences():
    torch.manual_seed(0)
    d, h = 8, 2
    fusion = AudioVisualFusion(d, h, dropout=0.1).double().eval()
    visual, audio = inputs(B, T, d), inputs(B, T, d)
    query, memory = visual * audio, torch.cat([audio, visual], 1)            # (B, 2T, d)
    wq, wk, wv = fusion.attn.in_proj_weight.chunk(3)
    bq, bk, bv = fusion.attn.in_proj_bias.chunk(3)
    split = lambda x: x.unflatten(-1, (h, d // h)).transpose(1, 2)           # (B, h, L, d/h)
    q, k, v = split(query @ wq.T + bq), split(memory @ wk.T + bk), split(memory @ wv.T + bv)
    heads = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, -1) @ v
    attended = fusion.attn.out_proj(heads.transpose(1, 2).flatten(2))
    torch.testing.assert_close(fusion(visual, audio), fusion.norm(query + attended))


# ----------------------------------------------------------------------------- heads, losses

def test_prediction_rule_event_gets_video_class_background_otherwise():
    relevance = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    category = torch.tensor([[0.1, 0.9, 0.3] + [0.0] * 25])
    assert predict_segments(relevance, category, background=28).tolist() == [[1, 28, 1, 28]]
    assert predict_segments(relevance, category[:, :5], background=5).tolist() == [[1, 5, 1, 5]]


def test_mil_branch_pools_max_over_time_then_softmax():
    branch = MILBranch(d_model=2, num_classes=28)
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
    relevance = torch.tensor([[2.0, -1.0]])
    category = torch.tensor([[0.0, 1.0] + [0.0] * 26])
    p_class = torch.softmax(category, -1).max()
    expected = torch.tensor([[torch.sigmoid(torch.tensor(2.0)) * p_class,
                              1 - torch.sigmoid(torch.tensor(-1.0))]])
    torch.testing.assert_close(segment_confidence(relevance, category), expected)


# ----------------------------------------------------------------------------- the whole model

@pytest.mark.parametrize('setting, keys', [
    ('supervised', {'relevance': (4, 10), 'category': (4, 28), 'udl': (4, 28)}),
    ('weak', {'relevance': (4, 10), 'category': (4, 29), 'video_score': (4, 29),
              'visual_video_score': (4, 29)}),
])
def test_output_shapes_and_float32(setting, keys):
    _, model, _ = build(setting, **SMALL_MODEL)
    out = model(torch.rand(4, 10, 128), torch.rand(4, 10, 7, 7, 512))
    assert {k: tuple(v.shape) for k, v in out.items()} == keys
    assert all(v.dtype == torch.float32 for v in out.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    pred = model.predict(out)
    assert pred.shape == (4, 10) and pred.dtype == torch.int64
    assert ((pred >= 0) & (pred <= 28)).all()


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_sizes_come_from_the_arguments(setting):
    spec = DataSpec(5, 3, 16, (4, 4, 24))
    _, model, criterion = build(setting, spec=spec, **SMALL_MODEL)
    out = model(torch.rand(2, 3, 16), torch.rand(2, 3, 4, 4, 24))           # 3 segments, 4 x 4
    width = 5 if setting == 'supervised' else 6
    assert out['category'].shape == (2, width) and out['relevance'].shape == (2, 3)
    assert model.predict(out).max() <= 5
    assert model.args == model_args(setting, spec, build(setting, **SMALL_MODEL)[0])


def test_the_constructor_has_no_defaults_to_disagree_with_the_config():
    """DMIN takes exactly the setting, the data's sizes and the MODEL_KEYS, none with a
    default: the config (and a checkpoint's model_args) says every one."""
    params = inspect.signature(DMIN).parameters.values()
    assert all(p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY for p in params)
    assert {p.name for p in params} == {'setting', 'num_classes', 'audio_dim', 'visual_dim',
                                        *MODEL_KEYS}


@pytest.mark.parametrize('setting', ['supervised', 'weak'])
def test_every_parameter_gets_a_gradient(setting):
    torch.manual_seed(0)
    _, model, criterion = build(setting, **SMALL_MODEL)
    segment = torch.full((4, 10), 28)
    segment[:, 2:8] = torch.tensor([3, 5, 7, 9]).unsqueeze(1)
    targets = {'segment': segment, 'video_class': torch.tensor([3, 5, 7, 9]),
               'video_label': torch.nn.functional.one_hot(torch.tensor([3, 5, 7, 28]), 29).float()}
    terms = criterion(model(torch.rand(4, 10, 128), torch.rand(4, 10, 7, 7, 512)), targets)
    assert set(terms) == set(criterion.weight_dict)
    total_loss(terms, criterion.weight_dict).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize('setting, count', [('supervised', 11_390_778), ('weak', 11_391_549)])
def test_parameter_count_of_the_configured_model(setting, count):
    cfg, _ = default_config(setting)
    assert count_parameters(build_model(model_args(setting, AVE, cfg))) == count
