"""Intra-modal encoders (docs/model.md, part 3): self-attention within one modality."""
from torch import nn

from model.dropout import FastCPUDropout


class IntraModalEncoder(nn.Module):
    """Linear to d_model, then post-LayerNorm Transformer encoder layers over the T segments."""

    def __init__(self, in_dim, d_model, n_heads, ff_dim, num_layers, dropout):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True)
        # Its three dropouts (no parameters) with the cheaper CPU mask (model/dropout.py).
        layer.dropout, layer.dropout1, layer.dropout2 = (FastCPUDropout(dropout) for _ in range(3))
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, x):
        # x (B, T, in_dim) -> (B, T, d_model)
        return self.layers(self.proj(x))
