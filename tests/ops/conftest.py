"""Random neural-memory inputs shared by the op tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from titans_dna.ops.memory import MemoryState


class MemoryCase(NamedTuple):
    """One op call's inputs: q, k, v [B, T, H, D]; theta, eta, alpha [B, T, H]; state."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    theta: torch.Tensor
    eta: torch.Tensor
    alpha: torch.Tensor
    state: MemoryState

    def leaves(self) -> list[torch.Tensor]:
        """Every input tensor (q, k, v, θ, η, α, weights..., momentum...)."""
        return [*self[:6], *self.state.weights, *self.state.momentum]

    @classmethod
    def from_leaves(cls, leaves: list[torch.Tensor], depth: int) -> MemoryCase:
        state = MemoryState(tuple(leaves[6 : 6 + depth]), tuple(leaves[6 + depth :]))
        return cls(*leaves[:6], state)


def make_memory_case(
    batch: int = 2,
    length: int = 20,
    heads: int = 2,
    dim: int = 8,
    depth: int = 1,
    hidden: int = 16,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    initial: str = "random",
    lr: float = 0.5,
) -> MemoryCase:
    """Fresh random inputs; q and k L2-normalised as the layer feeds them.

    initial: "random" (random weights and nonzero momentum) or "zero_momentum".
    lr: the upper end of the uniform learning rate θ.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, length, heads, dim)
    q = F.normalize(torch.randn(shape, generator=gen, dtype=dtype), dim=-1)
    k = F.normalize(torch.randn(shape, generator=gen, dtype=dtype), dim=-1)
    v = torch.randn(shape, generator=gen, dtype=dtype)
    theta = lr * torch.rand(shape[:3], generator=gen, dtype=dtype)
    eta = 0.3 + 0.7 * torch.rand(shape[:3], generator=gen, dtype=dtype)
    alpha = 0.3 * torch.rand(shape[:3], generator=gen, dtype=dtype)
    widths = [dim] + [hidden] * (depth - 1) + [dim]
    weights = tuple(
        torch.randn(batch, heads, widths[i + 1], widths[i], generator=gen, dtype=dtype)
        / math.sqrt(widths[i])
        for i in range(depth)
    )
    if initial == "random":
        momentum = tuple(0.1 * torch.randn(w.shape, generator=gen, dtype=dtype) for w in weights)
    else:
        momentum = tuple(torch.zeros_like(w) for w in weights)
    return MemoryCase(q, k, v, theta, eta, alpha, MemoryState(weights, momentum))


@pytest.fixture
def memory_case() -> Callable[..., MemoryCase]:
    """Factory of random memory inputs (see ``make_memory_case``)."""
    return make_memory_case


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ (absolute error when expected is zero)."""
    diff = (actual.double() - expected.double()).norm().item()
    scale = expected.double().norm().item()
    return diff / scale if scale > 0 else diff


@pytest.fixture
def rel_err() -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``relative_error``: ‖actual − expected‖ / ‖expected‖."""
    return relative_error
