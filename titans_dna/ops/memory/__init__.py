"""Neural long-term memory op (Titans, DESIGN.md section 2): one entry point, several backends.

``neural_memory`` validates and casts its inputs, then runs one implementation:

- ``"naive"``: token by token (``naive.py``), the reference; with chunk_size b it evaluates the
  chunked semantics exactly, so every backend computes the same function for the same arguments;
- ``"chunk"``: the chunked parallel (dual) form in plain PyTorch (``chunk.py``);
- ``"triton"``: fused kernels (module ``triton.py``, function ``triton_memory``, same signature);
- ``"auto"``: see :func:`resolve_impl`.

The memory's depth and widths come from the state; ``activation`` and ``residual`` complete the
memory function (see ``state.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from titans_dna.ops.memory.activations import ACTIVATIONS
from titans_dna.ops.memory.chunk import chunk_memory
from titans_dna.ops.memory.naive import UPDATES, naive_memory
from titans_dna.ops.memory.state import MemoryState, check_state, zeros_like_momentum

__all__ = [
    "IMPLS",
    "UPDATES",
    "MemoryKernelFallback",
    "MemoryState",
    "neural_memory",
    "resolve_impl",
    "zeros_like_momentum",
]

IMPLS = ("auto", "naive", "chunk", "triton")

MemoryImpl = Callable[..., tuple[Tensor, MemoryState]]


def _triton_module() -> ModuleType:
    # imported on demand: the Triton backend needs the triton package and (natively) a GPU
    return importlib.import_module("titans_dna.ops.memory.triton")


_TORCH_BACKENDS: dict[str, MemoryImpl] = {"naive": naive_memory, "chunk": chunk_memory}


def resolve_impl(impl: str, device: torch.device) -> str:
    """The backend name ``impl`` stands for on ``device``.

    "auto": the fused kernels on CUDA when triton is installed, else the chunked form. Calls the
    kernels do not support then run the chunked form too, with a one-time MemoryKernelFallback
    warning naming the reason (``neural_memory``); impl "triton" makes that an error.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown neural memory impl {impl!r}; choose from {IMPLS}")
    if impl == "auto":
        cuda = device.type == "cuda" and importlib.util.find_spec("triton") is not None
        return "triton" if cuda else "chunk"
    return impl


def neural_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    *,
    chunk_size: int = 64,
    impl: str = "auto",
    max_surprise_norm: float | None = None,
    activation: str = "silu",
    residual: bool = False,
    update: str = "normalized",
) -> tuple[Tensor, MemoryState]:
    """Run the neural memory over a sequence; returns (y, end state).

    q, k, v: [B, T, H, D] (queries should be L2-normalised by the caller, as keys);
    theta (learning rate >= 0), eta (momentum in (0, 1)), alpha (forgetting in [0, 1]): [B, T, H];
    state: MemoryState with weights and momentum [B, H, out, in] per memory layer (build the
    start of a sequence with ``MemoryState.initial(init_weights, B)``).
    chunk_size: tokens per chunk; within a chunk all surprise gradients are taken at the chunk's
    starting weights (1 = the exact token recurrence). T need not be a multiple of it; streaming
    a sequence in pieces whose lengths are multiples of chunk_size equals one pass.
    max_surprise_norm: clip each token's surprise gradient to this Frobenius norm (all memory
    layers together); None = no clipping.
    activation: "silu" | "gelu" | "relu" (MLP memory); residual: M(x) + x.
    update: "normalized" (each chunk's step damped by the curvature of its inputs, stable
    whatever the learning rate and chunk) or "paper" (the plain chunked update); see ``naive.py``.

    Dtypes: the state math runs in float64 when any input or state tensor is float64, else in
    float32 (bfloat16/float16 inputs are upcast). y comes back in q's dtype, the end state in the
    compute dtype.
    """
    name = resolve_impl(impl, q.device)
    _check_inputs(q, k, v, theta, eta, alpha, state, chunk_size, max_surprise_norm, activation)
    if update not in UPDATES:
        raise ValueError(f"unknown neural memory update {update!r}; choose from {UPDATES}")
    dtype = _compute_dtype(q, k, v, theta, eta, alpha, *state.weights, *state.momentum)
    state = state.to(dtype)
    if q.shape[1] == 0:
        return q.new_empty(q.shape), state
    kw = dict(chunk_size=chunk_size, activation=activation, residual=residual, update=update)
    if name == "triton":
        fused = _triton_module()
        plan = fused.plan_call(q, k, v, theta, eta, alpha, state, **kw,
                               max_surprise_norm=max_surprise_norm)  # fmt: skip
        if plan.reason is not None:
            if impl == "triton":
                raise ValueError(plan.reason)
            _warn_fallback(plan.reason)
            name = "chunk"
    if name == "triton":
        # the kernels read 16-bit inputs as they are (their math is float32 either way)
        y, end = fused.run_planned(plan.cfg, q, k, v, theta, eta, alpha, state)
    else:
        args = (t.to(dtype) for t in (q, k, v, theta, eta, alpha))
        y, end = _TORCH_BACKENDS[name](*args, state, max_surprise_norm=max_surprise_norm, **kw)
    return y.to(q.dtype), end


class MemoryKernelFallback(RuntimeWarning):
    """impl="auto" ran the chunked PyTorch form where the fused kernels were expected."""


_FALLBACKS_WARNED: set[str] = set()


def _warn_fallback(reason: str) -> None:
    # once per distinct reason: a model calls the op per layer and (MAC) per segment
    if reason not in _FALLBACKS_WARNED:
        _FALLBACKS_WARNED.add(reason)
        warnings.warn(
            f"neural_memory: the fused Triton kernels cannot run this call, using chunk.py "
            f"instead ({reason}); memory_impl='triton' makes this an error",
            MemoryKernelFallback,
            stacklevel=3,
        )


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_inputs(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    chunk_size: int,
    max_surprise_norm: float | None,
    activation: str,
) -> None:
    if q.dim() != 4:
        raise ValueError(f"q must be [B, T, H, D], got shape {list(q.shape)}")
    for name, x in (("k", k), ("v", v)):
        if x.shape != q.shape:
            raise ValueError(f"{name} shape {list(x.shape)} != q shape {list(q.shape)}")
    for name, x in (("theta", theta), ("eta", eta), ("alpha", alpha)):
        if x.shape != q.shape[:3]:
            raise ValueError(f"{name} must be [B, T, H] = {list(q.shape[:3])}, got {list(x.shape)}")
    batch, _, heads, dim = q.shape
    check_state(state, batch, heads, dim)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if max_surprise_norm is not None and not max_surprise_norm > 0:
        raise ValueError(f"max_surprise_norm must be > 0 or None, got {max_surprise_norm!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown memory activation {activation!r}; choose from {ACTIVATIONS}")
