"""Audio-visual interaction (docs/model.md, part 5): fuse the two DIMA outputs into one sequence."""
import torch
from torch import nn


class AudioVisualFusion(nn.Module):
    """query = visual * audio, attending over concat[audio, visual]; LayerNorm(query + attention)."""

    def __init__(self, d_model, n_heads, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, visual, audio):
        # visual, audio (B, T, d) -> fused (B, T, d)
        query = visual * audio
        memory = torch.cat([audio, visual], dim=1)                # (B, 2T, d)
        attended, _ = self.attn(query, memory, memory, need_weights=False)
        return self.norm(query + attended)
