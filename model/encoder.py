"""Intra-modal encoders (DMIN section 3): self-attention within one modality."""
from torch import nn

from model.dropout import Dropout


class IntraModalEncoder(nn.Module):
    """Linear to d_model, then post-LayerNorm Transformer encoder layers over the T segments."""

    def __init__(self, in_dim, d_model=256, n_heads=4, ff_dim=2048, num_layers=2, dropout=0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout, batch_first=True)
        # The same dropouts with model.dropout's cheaper CPU mask (the copies below keep it).
        layer.dropout, layer.dropout1, layer.dropout2 = (Dropout(dropout) for _ in range(3))
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(self, x):
        # x (B, T, in_dim) -> (B, T, d_model)
        return self.layers(self.proj(x))
