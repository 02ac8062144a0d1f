"""Fused Triton neural memory: forward and backward kernels behind a torch.autograd.Function.

``triton_memory`` has the signature of ``chunk_memory`` and computes the same chunked semantics
(DESIGN.md section 2). Supported (``plan_call`` says why not, otherwise):

- linear memory (depth 1), head dim D ≤ 128; depth-2 MLP memory with D ≤ 64 and hidden
  F ≤ 256 (every preset); any D/F, padded to a power of two ≥ 16;
- chunk sizes 16, 32, 64; any T (the last chunk is masked); activations silu, gelu, relu;
  residual; per-token surprise clipping (the linear memory then keeps whole rows in one program);
- q, k, v float32, bfloat16 or float16 (loaded as they are); state float32;
- on CUDA, only calls whose compiled kernels fit the device's shared memory (checked per call).

Kernels run natively on CUDA tensors, and on CPU tensors under Triton's interpreter when
TRITON_INTERPRET=1 was set before this module was imported. State, gates and accumulation are
float32; matrix products take TF32 operands for float32 inputs and bfloat16 operands for 16-bit
inputs on the GPU (the interpreter computes them in float32 and rounds bfloat16 operands).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from titans_dna.ops.memory import triton_launch as launch
from titans_dna.ops.memory.chunk import _log_gates
from titans_dna.ops.memory.state import MemoryState
from titans_dna.ops.memory.triton_launch import ACTIVATION_CODES, INTERPRETED, KernelConfig

__all__ = ["CHUNK_SIZES", "CallPlan", "plan_call", "run_planned", "triton_memory"]

CHUNK_SIZES = (16, 32, 64)
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_LINEAR_DIM = 128
MAX_MLP_DIM, MAX_MLP_HIDDEN = 64, 256
# Test hook: fill every buffer the kernels must write with NaN, so an unwritten element shows.
POISON_OUTPUTS = False


def _shape_reason(q: Tensor, state: MemoryState, chunk_size: int, activation: str) -> str | None:
    if q.device.type != "cuda" and not INTERPRETED:
        return (
            f"impl='triton' needs CUDA tensors (got {q.device.type}); on the CPU it runs only "
            "under Triton's interpreter (TRITON_INTERPRET=1 set before import)"
        )
    if q.dtype not in INPUT_DTYPES:
        return f"impl='triton' supports q/k/v in {INPUT_DTYPES}, got {q.dtype}"
    if any(t.dtype != torch.float32 for t in (*state.weights, *state.momentum)):
        return "impl='triton' needs a float32 memory state"
    if chunk_size not in CHUNK_SIZES:
        return f"impl='triton' supports chunk_size in {CHUNK_SIZES}, got {chunk_size}"
    if activation not in ACTIVATION_CODES:
        return f"impl='triton' supports activations {sorted(ACTIVATION_CODES)}, got {activation!r}"
    dim = q.shape[-1]
    if state.depth == 1:
        if dim > MAX_LINEAR_DIM:
            return f"impl='triton' supports a linear memory up to head dim {MAX_LINEAR_DIM}"
        return None
    hidden = state.weights[0].shape[2]
    if state.depth != 2 or dim > MAX_MLP_DIM or hidden > MAX_MLP_HIDDEN:
        return (
            f"impl='triton' supports MLP memories of depth 2 with head dim <= {MAX_MLP_DIM} and "
            f"hidden <= {MAX_MLP_HIDDEN}; got depth {state.depth}, dim {dim}, hidden {hidden}"
        )
    return None


def _config(
    q: Tensor,
    tensors: tuple[Tensor, ...],
    state: MemoryState,
    chunk_size: int,
    activation: str,
    residual: bool,
    max_surprise_norm: float | None,
    update: str,
) -> KernelConfig:
    save = torch.is_grad_enabled() and any(
        t.requires_grad for t in (*tensors, *state.weights, *state.momentum)
    )
    hidden = state.weights[0].shape[2] if state.depth == 2 else q.shape[-1]
    return KernelConfig.for_call(
        tuple(q.shape),
        q.dtype,
        hidden,
        state.depth,
        chunk_size,
        activation,
        residual,
        max_surprise_norm,
        update,
        save,
    )


@dataclass(frozen=True)
class CallPlan:
    """The kernels' configuration for one call, or (one line) why they cannot run it."""

    cfg: KernelConfig | None
    reason: str | None = None


def plan_call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    *,
    chunk_size: int,
    activation: str = "silu",
    residual: bool = False,
    max_surprise_norm: float | None = None,
    update: str = "normalized",
) -> CallPlan:
    """Whether ``triton_memory`` can run these arguments, and the configuration it runs them with.

    On CUDA this compiles the kernels the call needs (once per specialisation; the call then
    finds them compiled) to check their shared memory against the device.
    """
    reason = _shape_reason(q, state, chunk_size, activation)
    if reason is not None:
        return CallPlan(None, reason)
    tensors = (q, k, v, theta, eta, alpha)
    cfg = _config(q, tensors, state, chunk_size, activation, residual, max_surprise_norm, update)
    if q.device.type != "cuda":
        return CallPlan(cfg)
    key = (_compile_key(cfg), q.device.index, q.dtype)
    if key not in _RESOURCE_REASONS:
        _RESOURCE_REASONS[key] = launch.resource_reason(cfg, q.device, q.dtype)
    reason = _RESOURCE_REASONS[key]
    return CallPlan(None if reason else cfg, reason)


# Per compiled specialisation: the kernels are compiled and checked once, not at every call.
_RESOURCE_REASONS: dict[tuple, str | None] = {}


def _compile_key(cfg: KernelConfig) -> tuple:
    """What Triton compiles a distinct kernel for: the static fields, and for each integer
    argument whether it is 1 or a multiple of 16 (Triton's specialisation of integers)."""
    ints = (cfg.batch, cfg.length, cfg.heads, cfg.n_chunks)
    spec = tuple((n == 1, n % 16 == 0) for n in ints)
    return (replace(cfg, batch=0, length=0, heads=0), spec)


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _forward(cfg: KernelConfig, inputs: tuple[Tensor, ...]) -> tuple[tuple, tuple]:
    """Run the forward kernel; returns ((y, *end states), chunk-start state buffers)."""
    q, states = inputs[0], inputs[6:]
    dev, bh = q.device, cfg.batch * cfg.heads
    y = _empty(q.shape, q.dtype, dev)
    ends = tuple(_empty(s.shape, torch.float32, dev) for s in states)
    if cfg.state_slots:
        shapes = [(bh, cfg.state_slots, s[0].numel()) for s in states]
        slots = tuple(_empty(shape, torch.float32, dev) for shape in shapes)
    else:  # the linear forward without gradients never touches its slot arguments
        slots = ends
    chks = slots if cfg.save else ()
    if cfg.depth == 1:
        launch.linear_fwd(cfg, inputs, (y, *ends, *slots))()
        return (y, *ends), chks
    # the MLP forward also keeps the queries' hidden pre-activations [B, T, H, F] for the backward
    zq = _empty((*q.shape[:3], cfg.hidden), torch.float32, dev) if cfg.save else ends[0]
    launch.mlp_fwd(cfg, inputs, (y, *ends, *slots, zq))()
    chks = (*chks, zq) if cfg.save else ()
    return (y, *ends), chks


def _backward(cfg: KernelConfig, saved: tuple, grads_out: tuple) -> tuple[Tensor, ...]:
    """Run the backward kernel; gradients of q, k, v, θ, log(1-α), log η and the start state."""
    q, k, v, th = saved[:4]
    dev = q.device
    # linear memory: q, k and gate gradients sum over row blocks, written as [NV, ...] partials
    parts = (-(-cfg.dim // cfg.block_v_bwd),) if cfg.depth == 1 else ()
    dq, dk = (_empty((*parts, *q.shape), torch.float32, dev) for _ in range(2))
    dv = _empty(v.shape, v.dtype, dev)
    dgates = tuple(_empty((*parts, *th.shape), torch.float32, dev) for _ in range(3))
    d0 = tuple(_empty(d.shape, torch.float32, dev) for d in grads_out[1:])
    if cfg.depth == 1:
        launch.linear_bwd(cfg, saved, grads_out, (dq, dk, dv, *dgates, *d0))()
    else:  # two slots per state matrix carry the MLP's state gradient from chunk to chunk
        bh = cfg.batch * cfg.heads
        carry = tuple(_empty((bh, 2, d[0].numel()), torch.float32, dev) for d in d0)
        launch.mlp_bwd(cfg, saved, grads_out, (dq, dk, dv, *dgates, *d0, *carry))()
    if parts:
        dq, dk = dq.sum(0), dk.sum(0)
        dgates = tuple(g.sum(0) for g in dgates)
    return (dq.to(q.dtype), dk.to(k.dtype), dv, *dgates, *d0)


class _FusedMemory(torch.autograd.Function):
    """(q, k, v, θ, log(1-α), log η, *state) -> (y, *end state); the state is the layers' (W, S)
    pairs in kernel order, (W, S) or (W1, S1, W2, S2), each [B*H, out, in] float32."""

    @staticmethod
    def forward(ctx, cfg: KernelConfig, *inputs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        with _on_device(inputs[0].device):
            outputs, chks = _forward(cfg, inputs)
        if cfg.save:
            ctx.save_for_backward(*inputs[:6], *chks)
        ctx.cfg = cfg
        return outputs

    @staticmethod
    def backward(ctx, dy: Tensor, *d_ends: Tensor) -> tuple:  # type: ignore[override]
        grads_out = (dy.contiguous(), *(d.float().contiguous() for d in d_ends))
        with _on_device(dy.device):
            grads = _backward(ctx.cfg, ctx.saved_tensors, grads_out)
        return (None, *grads)


def _on_device(device: torch.device) -> AbstractContextManager:
    # Triton launches on the current CUDA device: make it the tensors' device
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def triton_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    *,
    chunk_size: int = 64,
    activation: str = "silu",
    residual: bool = False,
    max_surprise_norm: float | None = None,
    update: str = "normalized",
) -> tuple[Tensor, MemoryState]:
    """Fused chunked neural memory; same arguments and results as ``chunk_memory``.

    q, k, v: [B, T, H, D] (float32/bfloat16/float16); theta, eta, alpha: [B, T, H]; state: float32
    weights/momentum [B, H, out, in] per layer, T >= 1. Returns (y [B, T, H, D] in q's dtype,
    float32 end state). Raises ValueError when the call is outside the supported set.
    """
    kw = {"chunk_size": chunk_size, "activation": activation, "residual": residual}
    kw |= {"max_surprise_norm": max_surprise_norm, "update": update}
    plan = plan_call(q, k, v, theta, eta, alpha, state, **kw)
    if plan.reason is not None:
        raise ValueError(plan.reason)
    return run_planned(plan.cfg, q, k, v, theta, eta, alpha, state)


def run_planned(
    cfg: KernelConfig,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
) -> tuple[Tensor, MemoryState]:
    """``triton_memory`` for a call that ``plan_call`` accepted, with the plan's ``cfg``."""
    batch, _, heads, _ = q.shape
    log_keep, log_eta = _log_gates(eta.float(), alpha.float())
    inputs = tuple(t.contiguous() for t in (q, k, v, theta.float(), log_keep, log_eta))
    pairs = zip(state.weights, state.momentum, strict=True)
    flat = tuple(t.reshape(batch * heads, *t.shape[2:]).contiguous() for p in pairs for t in p)
    y, *ends = _FusedMemory.apply(cfg, *inputs, *flat)
    ends = [e.reshape(batch, heads, *e.shape[1:]) for e in ends]
    return y, MemoryState(tuple(ends[0::2]), tuple(ends[1::2]))
