"""The normalised non-linear gate that combines an attention branch with a memory branch.

Paper (MAG, section 4.2): "we normalize the outputs y and M(x) using learnable vector-valued
weights, followed by a non-linearity". Here both branches are RMS-normalised with their own
learned scales, the memory branch passes through a sigmoid and gates the attention branch, and
a projection maps the result back to the residual stream. MAC's y ⊗ M*(y) uses the same gate.
"""

from __future__ import annotations

import torch
from torch import nn

from titans_dna.layers.norm import rms_norm


class NormalizedGate(nn.Module):
    """out_proj(norm_a(a) * sigmoid(norm_m(m))).

    forward(a [B, T, d_model], m [B, T, d_model]) -> [B, T, d_model].
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm_a = rms_norm(d_model)
        self.norm_m = rms_norm(d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.norm_a(a) * torch.sigmoid(self.norm_m(m)))
