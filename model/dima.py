"""DIMA: dense inter-modality attention (docs/model.md, part 4).

A decoder layer whose query is one modality's input and whose memory is the other
modality's encoder output followed by the query itself. Scores against the query's own
T tokens are ordinary dot products; scores against the T cross-modal tokens are "dense":
the average over every circular channel shift m of q against k,

    s(q, k) = 1/D * sum_m w_m * sum_c q[(c + m) mod D] * k[c],
    w_0 = lambda,  w_m = (1 - lambda) / (D - 1) for m > 0,

which sums in closed form to

    s(q, k) = 1/D * [lambda * q.k + (1 - lambda) / (D - 1) * (sum(q) * sum(k) - q.k)].

The closed form is an inner product of augmented vectors: [q, sum(q)] against
[alpha * k, beta * sum(k)] for cross keys and [k, 0] for self keys, so one fused
scaled_dot_product_attention call computes the whole layer's attention.
"""
import torch
from torch import nn
import torch.nn.functional as F

from model.dropout import FastCPUDropout


class DenseAttention(nn.Module):
    """Multi-head attention over memory = concat[cross (T tokens), self (T tokens)]; with
    `lam` None, ordinary scaled dot products for the cross keys too (CMRAN's cross-modal
    relation attention)."""

    def __init__(self, d_model, n_heads, lam, dropout):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        if self.head_dim < 2 or self.head_dim * n_heads != d_model:
            raise ValueError(f'd_model={d_model} must split into n_heads={n_heads} heads '
                             'of width >= 2')
        self.lam = lam
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def heads(self, x):
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # (B, h, L, Dh)

    def forward(self, query, cross):
        # query (B, T, d): this modality; cross (B, T, d): the other modality's encoder output
        memory = torch.cat([cross, query], dim=1)                 # (B, 2T, d)
        q = self.heads(self.q_proj(query))                        # (B, h, T, Dh)
        k = self.heads(self.k_proj(memory))                       # (B, h, 2T, Dh)
        v = self.heads(self.v_proj(memory))                       # (B, h, 2T, Dh)
        T, D = query.shape[1], self.head_dim
        if self.lam is None:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0)    # (B, h, T, Dh)
            return self.out_proj(out.transpose(1, 2).flatten(2))
        alpha = (self.lam - (1 - self.lam) / (D - 1)) / D
        beta = (1 - self.lam) / ((D - 1) * D)
        k_cross, k_self = k[:, :, :T], k[:, :, T:]
        k_aug = torch.cat([
            torch.cat([alpha * k_cross, beta * k_cross.sum(-1, keepdim=True)], -1),
            torch.cat([k_self, torch.zeros_like(k_self[..., :1])], -1),
        ], dim=2)                                                 # (B, h, 2T, Dh + 1)
        q_aug = torch.cat([q, q.sum(-1, keepdim=True)], -1)       # (B, h, T, Dh + 1)
        out = F.scaled_dot_product_attention(
            q_aug, k_aug, v, dropout_p=self.dropout if self.training else 0.0,
            scale=D ** -0.5)                                      # (B, h, T, Dh)
        return self.out_proj(out.transpose(1, 2).flatten(2))      # (B, T, d)


class DIMADecoderLayer(nn.Module):
    """One DIMA layer: own query projection, dense attention, post-LN feed-forward. With
    `lam` None it is CMRAN's cross-modal relation attention layer (plain attention)."""

    def __init__(self, in_dim, d_model, n_heads, ff_dim, dropout, lam):
        super().__init__()
        # The decoder projects its raw input itself; this is not the encoder's projection.
        self.query_proj = nn.Linear(in_dim, d_model)
        self.attn = DenseAttention(d_model, n_heads, lam, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.ReLU(), FastCPUDropout(dropout),
                                nn.Linear(ff_dim, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = FastCPUDropout(dropout)

    def forward(self, x, cross):
        # x (B, T, in_dim): this modality's un-encoded input; cross (B, T, d)
        q = self.query_proj(x)                                    # (B, T, d)
        h = self.norm1(q + self.dropout(self.attn(q, cross)))
        return self.norm2(h + self.dropout(self.ff(h)))           # (B, T, d)
