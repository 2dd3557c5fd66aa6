"""AGTA's per-position BiLSTM on the CPU, with the audio half of its first layer computed once
per segment instead of once per position.

TemporalAttention runs a 2-layer BiLSTM over the T segments of each of the P positions, on
x = concat[pv + pa, pa], where pa (the projected audio) is the same at every position of a
segment. With W_ih = [W_a, W_b] split along its input, the first layer's input gates are

    W_ih x = W_a (pv + pa) + W_b pa = W_a pv + (W_a + W_b) pa,

so the second product is one per segment (B x T rows) instead of one per position
(B x P x T rows): half of that layer's input product, forward and backward, about a tenth of
a training step's FLOPs. oneDNN's fused LSTM takes inputs, not gates, so the first layer's
recurrence is written here, forward and backward by hand (`_Recurrence`); the second layer
is torch's own LSTM with the module's layer-1 weights. The parameters are the nn.LSTM's, so
checkpoints and parameter counts do not change, and the result is the nn.LSTM's up to float
rounding (tests/test_work_removed.py). On CUDA the model keeps cuDNN's LSTM on the
concatenation.
"""
import torch
import torch.nn.functional as F


def _gate_order(hidden, device):
    """Row order that turns torch's gate order (i, f, g, o) into (i, f, o, g): the three
    sigmoid gates contiguous, then the tanh one."""
    h = hidden
    return torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h),
                      torch.arange(2 * h, 3 * h)]).to(device)


class _Recurrence(torch.autograd.Function):
    """One bidirectional LSTM layer from its input gates.

    gates (N, T, 2, 4H): x W_ih^T + b_ih + b_hh of each direction, gate order (i, f, o, g);
    weight_hh (2, 4H, H) in the same order. Returns h (N, T, 2, H), zero initial state;
    direction 1 runs from the last step to the first. Backward is backpropagation through
    time written out, the gradients of the gates and of weight_hh."""

    @staticmethod
    def forward(ctx, gates, weight_hh):
        N, T, D, H4 = gates.shape
        H = H4 // 4
        acts = gates.new_empty(D, T, N, H4)          # sigmoid(i, f, o), tanh(g)
        cells = gates.new_empty(D, T, N, H)
        tanh_cells = gates.new_empty(D, T, N, H)
        out = gates.new_empty(N, T, D, H)
        for d in range(D):
            h = c = None
            for t in (range(T) if d == 0 else reversed(range(T))):
                pre = gates[:, t, d] if h is None else torch.addmm(gates[:, t, d], h,
                                                                   weight_hh[d].t())
                a = acts[d, t]
                torch.sigmoid(pre[:, :3 * H], out=a[:, :3 * H])
                torch.tanh(pre[:, 3 * H:], out=a[:, 3 * H:])
                i, f, o, g = a.split(H, dim=1)
                cell = torch.mul(i, g, out=cells[d, t])
                if c is not None:
                    cell.addcmul_(f, c)
                c = cell
                h = torch.mul(o, torch.tanh(c, out=tanh_cells[d, t]), out=out[:, t, d])
        ctx.save_for_backward(weight_hh, acts, cells, tanh_cells, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        weight_hh, acts, cells, tanh_cells, out = ctx.saved_tensors
        D, T, N, H4 = acts.shape
        H = H4 // 4
        grad_gates = acts.new_empty(N, T, D, H4)
        grad_whh = torch.empty_like(weight_hh)
        for d in range(D):
            steps = list(range(T)) if d == 0 else list(range(T - 1, -1, -1))   # forward's order
            dh = dc = None
            for k in range(T - 1, -1, -1):
                t = steps[k]
                prev = steps[k - 1] if k else None          # the step before t, in its order
                a = acts[d, t]
                i, f, o, g = a.split(H, dim=1)
                tc = tanh_cells[d, t]
                dh_t = grad_out[:, t, d] if dh is None else grad_out[:, t, d] + dh
                dgates = grad_gates[:, t, d]
                di, df, do, dg = dgates.split(H, dim=1)
                torch.mul(dh_t, tc, out=do)
                # dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh(c_t)^2)
                dct = torch.addcmul(o, o * tc, tc, value=-1).mul_(dh_t)
                if dc is not None:
                    dct.add_(dc)
                torch.mul(dct, g, out=di)
                torch.mul(dct, i, out=dg)
                if prev is None:
                    df.zero_()
                else:
                    torch.mul(dct, cells[d, prev], out=df)
                    dc = dct.mul_(f)
                # through the activations: sigmoid' = s (1 - s), tanh' = 1 - g^2
                s = a[:, :3 * H]
                dgates[:, :3 * H].mul_(torch.addcmul(s, s, s, value=-1))
                dg.addcmul_(dg * g, g, value=-1)
                if prev is not None:
                    dh = dgates @ weight_hh[d]
            # dW_hh = sum_t dgates_t^T h_prev(t), h_prev = 0 at the direction's first step
            zero = out.new_zeros(N, 1, H)
            h_prev = (torch.cat([zero, out[:, :-1, 0]], 1) if d == 0
                      else torch.cat([out[:, 1:, 1], zero], 1))
            torch.mm(grad_gates[:, :, d].flatten(0, 1).t(), h_prev.flatten(0, 1),
                     out=grad_whh[d])
        return grad_gates, grad_whh


def _layer_weights(lstm, layer, order):
    """(W_ih, W_hh, b) of both directions of `layer`, gate rows in `order`: (2, 4H, in),
    (2, 4H, H), (2, 4H) with b = b_ih + b_hh."""
    names = ['', '_reverse']
    w_ih = torch.stack([getattr(lstm, f'weight_ih_l{layer}{s}') for s in names])
    w_hh = torch.stack([getattr(lstm, f'weight_hh_l{layer}{s}') for s in names])
    bias = torch.stack([getattr(lstm, f'bias_ih_l{layer}{s}') + getattr(lstm, f'bias_hh_l{layer}{s}')
                        for s in names])
    return w_ih[:, order], w_hh[:, order], bias[:, order]


def split_audio_bilstm(lstm, pv, pa):
    """lstm(concat[pv + pa, pa]) for AGTA's 2-layer bidirectional batch-first nn.LSTM, the
    audio half of the first layer computed per segment.

    pv (B, P, T, H) per position, pa (B, T, H) per segment; returns (B, P, T, 2h), h the
    LSTM's hidden size, equal to lstm(cat([pv + pa, pa.expand_as(pv)], -1)) reshaped."""
    B, P, T, Hin = pv.shape
    h = lstm.hidden_size
    w_ih, w_hh, bias = _layer_weights(lstm, 0, _gate_order(h, pv.device))
    w_pos, w_seg = w_ih[..., :Hin], w_ih[..., :Hin] + w_ih[..., Hin:]
    per_position = F.linear(pv, w_pos.flatten(0, 1))                    # (B, P, T, 2 * 4h)
    per_segment = F.linear(pa, w_seg.flatten(0, 1), bias.flatten())     # (B, T, 2 * 4h)
    gates = (per_position + per_segment.unsqueeze(1)).view(B * P, T, 2, 4 * h)
    first = _Recurrence.apply(gates, w_hh).view(B * P, T, 2 * h)
    params = [getattr(lstm, f'{kind}_l1{s}') for s in ('', '_reverse')
              for kind in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]
    zeros = first.new_zeros(2, B * P, h)
    second, _, _ = torch.lstm(first, (zeros, zeros), params, True, 1, 0.0, lstm.training,
                              True, True)
    return second.view(B, P, T, 2 * h)


def concat_bilstm(lstm, pv, pa):
    """The same, as the plain nn.LSTM on the concatenation (cuDNN's on CUDA)."""
    B, P, T, _ = pv.shape
    pa = pa.unsqueeze(1)                                                # (B, 1, T, H)
    # Position-major, so that the concatenation is already laid out as the LSTM's batch of
    # B*P sequences and needs no extra copy.
    seq = torch.cat([pv + pa, pa.expand_as(pv)], dim=-1)               # (B, P, T, 2H)
    out, _ = torch.nn.LSTM.forward(lstm, seq.view(B * P, T, -1))        # (B*P, T, 2h)
    return out.view(B, P, T, -1)


def splits(x):
    """Whether AudioGuidedBiLSTM runs split_audio_bilstm on input x: on the CPU, outside
    autocast (then torch's LSTM runs only its second layer)."""
    return x.device.type == 'cpu' and not torch.is_autocast_enabled('cpu')


class AudioGuidedBiLSTM(torch.nn.LSTM):
    """AGTA's 2-layer bidirectional LSTM over concat[pv + pa, pa]: forward(pv (B, P, T, H),
    pa (B, T, H)) -> (B, P, T, 2h). Its parameters are those of the nn.LSTM it is (the same
    names in a checkpoint). Where `splits`, split_audio_bilstm runs it, else the plain LSTM
    on the concatenation."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size, num_layers=2, batch_first=True,
                         bidirectional=True)

    def forward(self, pv, pa):
        return (split_audio_bilstm if splits(pv) else concat_bilstm)(self, pv, pa)
