"""Rotary position embeddings (RoPE) for attention queries and keys.

Callers pass positions relative to a local origin (the start of an attention block or segment):
a rotary score depends only on the distance between query and key, so local positions give the
same scores as absolute ones while the angles stay small and exact at any depth into a genome.
"""

from __future__ import annotations

import torch

from titans_dna.layers.precision import working_dtype


class Rotary:
    """Angles pos * base^(-2i/D) for the D/2 channel pairs (i, i + D/2) (half-split layout).

    Holds no tensors, so casting a model to bfloat16 never degrades the frequencies; angles are
    computed in float64 and rounded once to the working precision.
    """

    def __init__(self, head_dim: int, base: float) -> None:
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.base = base

    def angles(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [*positions.shape, D/2] for integer `positions`, in the working precision
        of `dtype` (float32 for half types)."""
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=positions.device)
        inv_freq = self.base ** (-exponent / self.head_dim)
        theta = positions.to(torch.float64)[..., None] * inv_freq
        work = working_dtype(dtype)
        return theta.cos().to(work), theta.sin().to(work)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x [..., T, D] by the angles cos/sin [T, D/2]."""
    x1, x2 = x.to(cos.dtype).chunk(2, dim=-1)
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return rotated.to(x.dtype)
