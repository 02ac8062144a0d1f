"""Activations of an MLP memory with their derivatives, written out for the closed-form gradients.

The derivatives are plain differentiable tensor expressions: autograd goes through them when the
model is trained (the memory's inner gradient is part of the outer forward pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class Activation(NamedTuple):
    """σ, σ' and (σ, σ') together (elementwise; the pair shares intermediate results)."""

    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]]


def _silu_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _silu_value_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(x)
    value = x * s
    # σ' = s (1 + x (1 − s)) = s + s (x − σ)
    return value, torch.addcmul(s, s, x - value)


def _gelu_grad(x: Tensor) -> Tensor:
    # exact (erf) GELU: Φ(x) + x φ(x)
    cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))
    pdf = torch.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return cdf + x * pdf


def _relu_grad(x: Tensor) -> Tensor:
    return (x > 0).to(x.dtype)


def _separately(fn: Callable[[Tensor], Tensor], grad: Callable[[Tensor], Tensor]):
    return lambda x: (fn(x), grad(x))


ACTIVATIONS: dict[str, Activation] = {
    "silu": Activation(torch.nn.functional.silu, _silu_grad, _silu_value_and_grad),
    "gelu": Activation(
        torch.nn.functional.gelu, _gelu_grad, _separately(torch.nn.functional.gelu, _gelu_grad)
    ),
    "relu": Activation(torch.relu, _relu_grad, _separately(torch.relu, _relu_grad)),
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ValueError naming the choices otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown memory activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
