"""Fused Triton neural memory: forward and backward kernels behind a torch.autograd.Function.

``triton_memory`` has the signature of ``chunk_memory`` and computes the same chunked semantics
(DESIGN.md section 2). Supported (``unsupported_reason`` says why not, otherwise):

- linear memory (depth 1), head dim D ≤ 128; depth-2 MLP memory with D ≤ 64 and hidden F ≤ 128
  (the four state tiles and their gradients stay on chip); any D/F, padded to a power of two ≥ 16;
- chunk sizes 16, 32, 64; any T (the last chunk is masked); activations silu, gelu, relu;
  residual; per-token surprise clipping (the linear memory then keeps whole rows in one program);
- q, k, v float32, bfloat16 or float16 (loaded as is, math in float32); state float32.

Kernels run natively on CUDA tensors, and on CPU tensors under Triton's interpreter when
TRITON_INTERPRET=1 was set before this module was imported. float32 inputs use IEEE float32
matrix products; 16-bit inputs let the float32 products run in TF32.
"""

from __future__ import annotations

import torch
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from titans_dna.ops.memory.chunk import _log_gates
from titans_dna.ops.memory.state import MemoryState
from titans_dna.ops.memory.triton_bwd import linear_bwd_kernel, mlp_bwd_kernel
from titans_dna.ops.memory.triton_fwd import linear_fwd_kernel, mlp_fwd_kernel

__all__ = ["CHUNK_SIZES", "triton_memory", "unsupported_reason"]

CHUNK_SIZES = (16, 32, 64)
ACTIVATION_CODES = {"silu": 0, "gelu": 1, "relu": 2}
INPUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_LINEAR_DIM = 128
MAX_MLP_DIM, MAX_MLP_HIDDEN = 64, 128
INTERPRETED = isinstance(linear_fwd_kernel, InterpretedFunction)
# Test hook: fill every buffer the kernels must write with NaN, so an unwritten element shows.
POISON_OUTPUTS = False


def _block(n: int) -> int:
    """Power-of-two tile width ≥ 16 (the minimum of tl.dot) covering n."""
    return max(16, 1 << (n - 1).bit_length())


def unsupported_reason(
    q: Tensor, state: MemoryState, chunk_size: int, activation: str
) -> str | None:
    """Why the kernels cannot run this call (one line), or None when they can."""
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


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


class _Config:
    """Static launch parameters of one call."""

    def __init__(
        self,
        q: Tensor,
        hidden: int,
        depth: int,
        chunk_size: int,
        activation: str,
        residual: bool,
        tau: float | None,
        save: bool,
    ) -> None:
        self.batch, self.length, self.heads, self.dim = q.shape
        self.hidden, self.depth = hidden, depth
        self.chunk = chunk_size
        self.n_chunks = -(-self.length // chunk_size)
        self.block_d, self.block_f = _block(self.dim), _block(hidden)
        self.act = ACTIVATION_CODES[activation]
        self.residual = residual
        self.clip = tau is not None
        self.tau = float(tau) if tau is not None else 1.0
        self.save = save
        self.prec = "ieee" if q.dtype == torch.float32 else "tf32"
        # linear memory: output rows evolve independently, so programs split them into blocks,
        # except when clipping (the clip factor needs each token's whole error vector)
        full = self.block_d
        self.block_v_fwd = full if self.clip else min(full, 64)
        self.block_v_bwd = full if self.clip else min(full, 32)
        self.warps = 4 if max(self.block_d, self.block_f, chunk_size) <= 32 else 8


def _linear_forward(
    cfg: _Config, q: Tensor, k: Tensor, v: Tensor, gates: tuple[Tensor, ...], w0: Tensor, s0: Tensor
) -> tuple[Tensor, ...]:
    """Outputs y, W_end, S_end and the chunk-start states [B*H, NC, D, D] (None unless saved)."""
    dev, d, bh = q.device, cfg.dim, cfg.batch * cfg.heads
    y = _empty(q.shape, q.dtype, dev)
    w_end, s_end = (_empty((bh, d, d), torch.float32, dev) for _ in range(2))
    if cfg.save:
        w_chk, s_chk = (_empty((bh, cfg.n_chunks, d, d), torch.float32, dev) for _ in range(2))
    else:
        w_chk, s_chk = None, None
    grid = (bh, -(-d // cfg.block_v_fwd))
    linear_fwd_kernel[grid](
        q, k, v, *gates, w0, s0, y, w_end, s_end,
        w_end if w_chk is None else w_chk, s_end if s_chk is None else s_chk,
        cfg.length, cfg.heads, cfg.n_chunks, cfg.tau,
        D=d, BD=cfg.block_d, BV=cfg.block_v_fwd, BT=cfg.chunk,
        CLIP=cfg.clip, SAVE=cfg.save, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip
    return y, w_end, s_end, w_chk, s_chk


def _linear_backward(
    cfg: _Config, saved: tuple[Tensor, ...], dy: Tensor, dw_end: Tensor, ds_end: Tensor
) -> tuple[Tensor, ...]:
    """Gradients of q, k, v, θ, log(1-α), log η, W_0, S_0."""
    q, k, v, th, la, ln, w_chk, s_chk = saved
    dev, d, bh = q.device, cfg.dim, cfg.batch * cfg.heads
    nv = -(-d // cfg.block_v_bwd)
    dq, dk = (_empty((nv, *q.shape), torch.float32, dev) for _ in range(2))
    dv = _empty(v.shape, v.dtype, dev)
    dth, dla, dln = (_empty((nv, *th.shape), torch.float32, dev) for _ in range(3))
    dw0, ds0 = (_empty((bh, d, d), torch.float32, dev) for _ in range(2))
    linear_bwd_kernel[(bh, nv)](
        q, k, v, th, la, ln, w_chk, s_chk, dy, dw_end, ds_end,
        dq, dk, dv, dth, dla, dln, dw0, ds0,
        cfg.batch, cfg.length, cfg.heads, cfg.n_chunks, cfg.tau,
        D=d, BD=cfg.block_d, BV=cfg.block_v_bwd, BT=cfg.chunk,
        CLIP=cfg.clip, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip
    return (dq.sum(0), dk.sum(0), dv, dth.sum(0), dla.sum(0), dln.sum(0), dw0, ds0)


def _mlp_forward(
    cfg: _Config,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    gates: tuple[Tensor, ...],
    states: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """Outputs y, the four end states and the four chunk-start state buffers (None unless saved)."""
    dev, bh = q.device, cfg.batch * cfg.heads
    y = _empty(q.shape, q.dtype, dev)
    ends = tuple(_empty(s.shape, torch.float32, dev) for s in states)
    if cfg.save:
        shape = (bh, cfg.n_chunks, cfg.hidden * cfg.dim)
        chks = tuple(_empty(shape, torch.float32, dev) for _ in states)
    else:
        chks = (None,) * 4
    mlp_fwd_kernel[(bh,)](
        q, k, v, *gates, *states, y, *ends,
        *(e if c is None else c for e, c in zip(ends, chks, strict=True)),
        cfg.length, cfg.heads, cfg.n_chunks, cfg.tau,
        D=cfg.dim, F=cfg.hidden, BD=cfg.block_d, BF=cfg.block_f, BT=cfg.chunk,
        ACT=cfg.act, RES=cfg.residual, CLIP=cfg.clip, SAVE=cfg.save, PREC=cfg.prec,
        num_warps=cfg.warps,
    )  # fmt: skip
    return (y, *ends, *chks)


def _mlp_backward(
    cfg: _Config, saved: tuple[Tensor, ...], dy: Tensor, d_ends: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """Gradients of q, k, v, θ, log(1-α), log η, W1, S1, W2, S2 at the start."""
    q, k, v, th, la, ln, *chks = saved
    dev = q.device
    dq, dk = (_empty(q.shape, torch.float32, dev) for _ in range(2))
    dv = _empty(v.shape, v.dtype, dev)
    dth, dla, dln = (_empty(th.shape, torch.float32, dev) for _ in range(3))
    d0 = tuple(_empty(d.shape, torch.float32, dev) for d in d_ends)
    mlp_bwd_kernel[(cfg.batch * cfg.heads,)](
        q, k, v, th, la, ln, *chks, dy, *d_ends,
        dq, dk, dv, dth, dla, dln, *d0,
        cfg.length, cfg.heads, cfg.n_chunks, cfg.tau,
        D=cfg.dim, F=cfg.hidden, BD=cfg.block_d, BF=cfg.block_f, BT=cfg.chunk,
        ACT=cfg.act, RES=cfg.residual, CLIP=cfg.clip, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip
    return (dq, dk, dv, dth, dla, dln, *d0)


class _FusedMemory(torch.autograd.Function):
    """(q, k, v, θ, log(1-α), log η, *state) -> (y, *end state); state = layers' (W, S) pairs
    in kernel order: (W, S) for the linear memory, (W1, S1, W2, S2) for the MLP, each [B*H, o, i].
    """

    @staticmethod
    def forward(ctx, cfg: _Config, q, k, v, th, la, ln, *states):  # type: ignore[override]
        gates = (th, la, ln)
        if cfg.depth == 1:
            y, *ends, w_chk, s_chk = _linear_forward(cfg, q, k, v, gates, *states)
            chks = (w_chk, s_chk)
        else:
            y, *rest = _mlp_forward(cfg, q, k, v, gates, states)
            ends, chks = rest[:4], tuple(rest[4:])
        if cfg.save:
            ctx.save_for_backward(q, k, v, th, la, ln, *chks)
        ctx.cfg = cfg
        return (y, *ends)

    @staticmethod
    def backward(ctx, dy, *d_ends):  # type: ignore[override]
        cfg = ctx.cfg
        saved = ctx.saved_tensors
        d_ends = tuple(d.float().contiguous() for d in d_ends)
        dy = dy.contiguous()
        if cfg.depth == 1:
            grads = _linear_backward(cfg, saved, dy, *d_ends)
        else:
            grads = _mlp_backward(cfg, saved, dy, d_ends)
        inputs = (saved[0], saved[1], saved[2])
        grads = tuple(g.to(x.dtype) for g, x in zip(grads[:3], inputs, strict=True)) + grads[3:]
        return (None, *grads)


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
) -> tuple[Tensor, MemoryState]:
    """Fused chunked neural memory; same arguments and results as ``chunk_memory``.

    q, k, v: [B, T, H, D] (float32/bfloat16/float16); theta, eta, alpha: [B, T, H]; state: float32
    weights/momentum [B, H, out, in] per layer, T >= 1. Returns (y [B, T, H, D] in q's dtype,
    float32 end state). Raises ValueError when the call is outside the supported set.
    """
    reason = unsupported_reason(q, state, chunk_size, activation)
    if reason is not None:
        raise ValueError(reason)
    batch, _, heads, dim = q.shape
    log_keep, log_eta = _log_gates(eta.float(), alpha.float())
    inputs = [t.contiguous() for t in (q, k, v, theta.float(), log_keep, log_eta)]
    pairs = [(w, s) for w, s in zip(state.weights, state.momentum, strict=True)]
    flat = [t.reshape(batch * heads, *t.shape[2:]).contiguous() for pair in pairs for t in pair]
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *flat))
    hidden = state.weights[0].shape[2] if state.depth == 2 else dim
    cfg = _Config(q, hidden, state.depth, chunk_size, activation, residual, max_surprise_norm, save)
    y, *ends = _FusedMemory.apply(cfg, *inputs, *flat)
    ends = [e.reshape(batch, heads, *e.shape[1:]) for e in ends]
    return y, MemoryState(tuple(ends[0::2]), tuple(ends[1::2]))
