"""Normalisation layers: RMSNorm over the model width and per-head RMSNorm."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-6


def rms_norm(d_model: int) -> nn.RMSNorm:
    """RMSNorm over the last dimension with a learned scale (the block and final norms)."""
    return nn.RMSNorm(d_model, eps=EPS)


class HeadRMSNorm(nn.Module):
    """RMSNorm of each head's vector on its own, with a learned scale per head and channel.

    forward(x [..., H, D]) -> [..., H, D].
    """

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = torch.nn.functional.rms_norm(x, (x.shape[-1],), eps=EPS)
        return normed * self.weight.to(x.dtype)
