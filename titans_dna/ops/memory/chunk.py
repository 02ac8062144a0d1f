"""The neural memory in chunked parallel (dual) form, plain PyTorch: the CPU implementation.

Within a chunk of b tokens every surprise gradient is taken at the chunk's starting weights W_0
(DESIGN.md section 2), so with u_i = 2 δ_i h_iᵀ (error ⊗ layer input, at W_0) the recurrences
unroll to

    W_t = β_t W_0 + γ_t S_0 − Σ_{i≤t} D_{t,i} θ_i c_i u_i,     S_b = ρ S_0 − Σ_i P_{b,i} θ_i c_i u_i

with L^α_{t,s} = Π_{s<j≤t} (1−α_j), P_{s,i} = Π_{i<j≤s} η_j, D = L^α P (so G_{t,i} = θ_i D_{t,i}),
β_t = Π_{j≤t} (1−α_j), γ_t = Σ_{s≤t} L^α_{t,s} P_{s,0}, ρ = P_{b,0}, and c_i the surprise clip
factor. Retrieval therefore needs no per-token weights: for each memory layer, with query-side
inputs X (the queries, then the previous layer's dual-form activations) and key-side inputs H
(the keys, then their activations at W_0),

    Z = diag(β) X W_0ᵀ + diag(γ) X S_0ᵀ − ((X Hᵀ) ⊙ D) diag(2θc) Δ.

Only the state recurrence is sequential:

1. everything that does not depend on the state (gate matrices, the first layer's Q Kᵀ ⊙ D,
   the β/γ-weighted queries) is computed for all chunks at once, here, under autograd;
2. a Python loop over chunks carries (W, S): the surprise at W_0 (key forward pass and
   backpropagated errors) and the end-of-chunk state, nothing else (``chunk_fwd.recurrence``);
3. retrieval (the formula above) runs for all chunks at once from the recorded chunk-start
   states (``chunk_fwd.retrieve``).

The normalized update (the default; ``naive.py``, docs/memory.md) damps row t of each chunk's
update by n_t = 1 / (1 + Σ_l ‖C_{l,t}‖_F), ‖C_{l,t}‖_F² = Σ_{i,j} s_i s_j D_{t,i} D_{t,j}
(h_{l,i}·h_{l,j})² with s = 2θc: it scales the rows of every layer's scores in retrieval, and the
end state applies its last row's n. It is computed in the recurrence (it needs each chunk's clip
factors and hidden activations).

Steps 2 and 3 form one autograd Function whose backward is written out (``chunk_bwd.py``): the
same structure in reverse, without autograd's per-operation bookkeeping. Products of gates are
exponentials of sums of log-gates over index ranges (never divisions of cumulative products,
which underflow).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from titans_dna.ops.memory import chunk_bwd, chunk_fwd
from titans_dna.ops.memory.activations import get_activation
from titans_dna.ops.memory.chunk_fwd import ChunkInputs, weigh
from titans_dna.ops.memory.state import MemoryState

# Long inputs run in windows of at most this many (chunk, batch*head) matrices: the window's
# chunk-start states, gate matrices and (in training) the backward pass's temporaries live at
# once, so this bounds inference memory and keeps training's working set small, so throughput
# stays flat with length (docs/benchmarks.md, "Neural memory on the CPU").
WINDOW_MATRICES = 64


class ChunkGates(NamedTuple):
    """Gate products of every chunk; N = B*H, nc chunks of b tokens.

    decay [nc, N, b, b]: D_{t,i} (zero above the diagonal);
    retrieval [nc, N, b, 2, 1]: (β_t, γ_t), the weights of W_0 and S_0 in W_t;
    end_weights [nc, N, b, 2, 1]: (D_{r,i}, P_{r,i}) on each chunk's last real row r;
    end_keep [nc, N, 1, 2, 1]: (β_r, ρ); end_gamma [nc, N, 1, 1]: γ_r; so that
    (W_b, S_b) = (β_r W_0 + γ_r S_0, ρ S_0) − Σ_i (D_{r,i}, P_{r,i}) 2θ_i c_i δ_i h_iᵀ.
    """

    decay: Tensor
    retrieval: Tensor
    end_weights: Tensor
    end_keep: Tensor
    end_gamma: Tensor


def segment_sums(x: Tensor) -> Tensor:
    """out[..., t, s] = Σ_{s<j≤t} x[..., j] for t >= s, -inf above the diagonal.

    x: [..., b] log-gates -> [..., b, b], as differences of prefix sums within the chunk. The
    log-gates are clamped to >= log(eps/2) (``_log_gates``), so a difference is off by at most
    about b·|log(eps/2)|·eps in absolute terms, the relative error of the product it gives: 1e-4
    in float32 at b = 64 when every gate of the chunk is saturated, ~1e-7 for ordinary gates.
    """
    b = x.shape[-1]
    prefix = x.cumsum(-1)
    lower = torch.ones(b, b, dtype=torch.bool, device=x.device).tril()
    return (prefix.unsqueeze(-1) - prefix.unsqueeze(-2)).masked_fill(~lower, -math.inf)


def chunk_gates(log_keep: Tensor, log_eta: Tensor, last: Tensor) -> ChunkGates:
    """Gate products from log(1−α) and log η, both [nc, N, b]; ``last`` [nc]: last real row."""
    keep = segment_sums(log_keep).exp()  # L^α
    mom = segment_sums(log_eta).exp()  # P
    decay = keep @ mom
    beta = log_keep.cumsum(-1).exp()
    eta_prod = log_eta.cumsum(-1).exp()  # P_{s,0}
    gamma = (keep @ eta_prod.unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(decay.shape[0], device=decay.device)
    end_beta, end_gamma, end_rho = (x[rows, :, last] for x in (beta, gamma, eta_prod))
    return ChunkGates(
        decay=decay,
        retrieval=torch.stack([beta, gamma], -1).unsqueeze(-1),
        end_weights=torch.stack([decay[rows, :, last], mom[rows, :, last]], -1).unsqueeze(-1),
        end_keep=torch.stack([end_beta, end_rho], -1)[..., None, :, None],
        end_gamma=end_gamma[..., None, None],
    )


def _to_chunks(x: Tensor, b: int) -> Tensor:
    """[B, T, H, *f] -> [nc, B*H, b, *f], zero-padding T up to a multiple of b.

    Padded tokens only ever reach padded rows (every product is causal within a chunk).
    """
    batch, length, heads = x.shape[:3]
    x = x.transpose(1, 2)
    n_chunks = -(-length // b)
    if n_chunks * b != length:
        x = F.pad(x, [0, 0] * (x.dim() - 3) + [0, n_chunks * b - length])
    x = x.reshape(batch * heads, n_chunks, b, *x.shape[3:])
    return x.transpose(0, 1).contiguous()


def _log_gates(eta: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """log(1−α), log η, with 1−α and η clamped to >= eps/2 (a relative leak below rounding).

    α = 1 or η = 0 thus give finite logs and finite gradients.
    """
    floor = torch.finfo(alpha.dtype).eps / 2
    log_keep = torch.log1p(-alpha.clamp(max=1 - floor))
    log_eta = eta.clamp(min=floor).log()
    return log_keep, log_eta


def _prepare(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    b: int,
    residual: bool,
) -> ChunkInputs:
    """All state-free work, for every chunk at once: the recurrence's and retrieval's inputs."""
    length = q.shape[1]
    queries, keys, values = (_to_chunks(x, b) for x in (q, k, v))
    if residual:
        values = values - keys
    log_keep, log_eta = _log_gates(eta, alpha)
    last = torch.full((queries.shape[0],), b - 1, device=q.device)
    last[-1] = (length - 1) % b
    gates = chunk_gates(_to_chunks(log_keep, b), _to_chunks(log_eta, b), last)
    return ChunkInputs(
        keys=keys,
        values=values,
        scale=2 * _to_chunks(theta, b).unsqueeze(-1),
        key_norm_sq=torch.linalg.vecdot(keys, keys),
        end_weights=gates.end_weights,
        key_update=weigh(keys, gates.end_weights),
        end_keep=gates.end_keep,
        end_gamma=gates.end_gamma,
        first_inputs=weigh(queries, gates.retrieval),
        first_scores=(queries @ keys.mT) * gates.decay,
        decay=gates.decay,
        retrieval=gates.retrieval,
    )


class _ChunkedMemory(torch.autograd.Function):
    """(start carry, ChunkInputs) -> (y [nc, N, b, D], end carry), with a written-out backward.

    tail: the last chunk's last real row for the normalized update, None for the paper's.
    """

    @staticmethod
    def forward(
        ctx, activation: str, max_norm: float | None, tail: int | None, depth: int, *tensors
    ):
        act = get_activation(activation)
        inputs = ChunkInputs(*tensors[depth:])
        for_backward = any(ctx.needs_input_grad)
        y, carry, saved = chunk_fwd.forward(
            list(tensors[:depth]), inputs, act, max_norm, tail, for_backward
        )
        if for_backward:
            ctx.save_for_backward(*inputs)
            ctx.memory = (act, max_norm, tail, saved)
        return (y, *carry)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, *d_end: Tensor):
        act, max_norm, tail, saved = ctx.memory
        inputs = ChunkInputs(*ctx.saved_tensors)
        d_carry, d_inputs = chunk_bwd.backward(dy, list(d_end), inputs, saved, act, max_norm, tail)
        return (None, None, None, None, *d_carry, *d_inputs)


def _state_to_carry(state: MemoryState) -> list[Tensor]:
    """[B, H, out, in] weights and momentum -> (W | S) [B*H, out, 2, in] per layer."""
    return [
        torch.stack([w, s], -2).flatten(0, 1)
        for w, s in zip(state.weights, state.momentum, strict=True)
    ]


def _carry_to_state(carry: list[Tensor], batch: int, heads: int) -> MemoryState:
    weights = tuple(ws[:, :, 0].unflatten(0, (batch, heads)) for ws in carry)
    momentum = tuple(ws[:, :, 1].unflatten(0, (batch, heads)) for ws in carry)
    return MemoryState(weights, momentum)


def chunk_memory(
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
    """Chunked dual-form neural memory; same arguments and results as ``naive_memory``.

    q, k, v: [B, T, H, D]; theta, eta, alpha: [B, T, H]; state [B, H, out, in] per layer; all one
    floating dtype, T >= 1. Returns (y [B, T, H, D], end state).

    Long sequences run as consecutive windows of chunks (``WINDOW_MATRICES``), streaming the
    state between them, which equals one pass: inference memory is bounded by the window, not T.
    """
    get_activation(activation)  # fail early on an unknown name
    batch, length, heads, dim = q.shape
    b = min(chunk_size, length)
    window = max(1, WINDOW_MATRICES // (batch * heads)) * b
    carry = _state_to_carry(state)
    outputs = []
    # split, not slicing: its backward concatenates the windows' gradients once, where each
    # slice's backward would add a zero-padded full-length gradient (quadratic in T)
    windows = zip(*(x.split(window, 1) for x in (q, k, v, theta, eta, alpha)), strict=True)
    for piece in windows:
        inputs = _prepare(*piece, b, residual)
        tail = (piece[0].shape[1] - 1) % b if update == "normalized" else None
        y, *carry = _ChunkedMemory.apply(
            activation, max_surprise_norm, tail, len(carry), *carry, *inputs
        )
        y = y.view(-1, batch, heads, b, dim).permute(1, 0, 3, 2, 4).reshape(batch, -1, heads, dim)
        outputs.append(y[:, : piece[0].shape[1]])
    y = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)
    if residual:
        y = y + q
    return y, _carry_to_state(carry, batch, heads)
