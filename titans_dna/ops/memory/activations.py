"""Activations of an MLP memory with their first and second derivatives.

σ' enters the closed-form surprise (the memory's inner gradient); σ'' enters the outer gradient
through it (the chunked form's hand-written backward). All are plain tensor expressions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class Activation(NamedTuple):
    """σ, σ', (σ, σ') together (sharing intermediate results) and σ'' (elementwise)."""

    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]]
    grad2: Callable[[Tensor], Tensor]


# SiLU's derivatives are written as fused multiply-adds: each pass over a [.., b, hidden] tensor
# costs as much as a small matrix product, so σ' takes three passes and σ'' five.
def _silu_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    # σ' = s (1 + x (1 − s)) = s + s (x − x s)
    return torch.addcmul(s, s, torch.addcmul(x, x, s, value=-1))


def _silu_value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(x)
    value = x * s
    return value, torch.addcmul(s, s, x - value)


def _silu_grad2(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    # σ'' = s (1 − s) (2 + x (1 − 2 s)) = (s − s²) (x + 2 − 2 x s)
    return torch.addcmul(s, s, s, value=-1).mul_(torch.addcmul(x + 2, x, s, value=-2))


def _normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))


def _gelu_grad(x: Tensor) -> Tensor:
    # exact (erf) GELU: Φ(x) + x φ(x)
    cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))
    return cdf + x * _normal_pdf(x)


def _gelu_grad2(x: Tensor) -> Tensor:
    # 2 φ(x) + x φ'(x) = φ(x) (2 − x²)
    return _normal_pdf(x) * (2 - x * x)


def _relu_grad(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def _separately(fn: Callable[[Tensor], Tensor], grad: Callable[[Tensor], Tensor]):
    return lambda x: (fn(x), grad(x))


ACTIVATIONS: dict[str, Activation] = {
    "silu": Activation(torch.nn.functional.silu, _silu_grad, _silu_value_and_grad, _silu_grad2),
    "gelu": Activation(
        torch.nn.functional.gelu,
        _gelu_grad,
        _separately(torch.nn.functional.gelu, _gelu_grad),
        _gelu_grad2,
    ),
    "relu": Activation(
        torch.relu, _relu_grad, _separately(torch.relu, _relu_grad), torch.zeros_like
    ),
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ValueError naming the choices otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown memory activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
