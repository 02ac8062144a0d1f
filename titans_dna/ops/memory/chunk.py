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

Everything that does not depend on the state (gate matrices, the first layer's X Hᵀ ⊙ D, the
β/γ-scaled queries, the end-of-chunk weighting of the keys) is computed for all chunks at once;
the Python loop over chunks does only the state-dependent matrix products. W and S of a layer
are carried side by side as one [out, 2 in] tensor so each product is a single batched matmul.
Products of gates are exponentials of sums of logarithms over index ranges (never divisions of
cumulative products, which underflow). Autograd differentiates the whole computation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_dna.ops.memory.activations import Activation, get_activation
from titans_dna.ops.memory.state import MemoryState


class ChunkGates(NamedTuple):
    """Gate products of every chunk; N = B*H, nc chunks of b tokens.

    decay [nc, N, b, b]: D_{t,i} (zero above the diagonal); beta, gamma [nc, N, b, 1];
    end_decay, end_momentum [nc, N, b]: D and P on each chunk's last real row;
    end_beta, end_gamma, end_rho [nc, N, 1, 1]: β, γ and ρ there.
    """

    decay: Tensor
    beta: Tensor
    gamma: Tensor
    end_decay: Tensor
    end_momentum: Tensor
    end_beta: Tensor
    end_gamma: Tensor
    end_rho: Tensor


def segment_sums(x: Tensor) -> Tensor:
    """out[..., t, s] = Σ_{s<j≤t} x[..., j] for t >= s, -inf above the diagonal.

    x: [..., b] -> [..., b, b]. Each entry sums only its own range (a masked cumulative sum), so
    the exponential is exact even next to a huge log-gate (no difference of large prefix sums).
    """
    b = x.shape[-1]
    ones = torch.ones(b, b, dtype=torch.bool, device=x.device)
    terms = x.unsqueeze(-1).expand(*x.shape, b).masked_fill(~ones.tril(-1), 0)
    return terms.cumsum(-2).masked_fill(~ones.tril(), -math.inf)


def chunk_gates(log_keep: Tensor, log_eta: Tensor, last: Tensor) -> ChunkGates:
    """Gate products from log(1−α) and log η, both [nc, N, b]; ``last`` [nc]: last real row."""
    keep = segment_sums(log_keep).exp()  # L^α
    mom = segment_sums(log_eta).exp()  # P
    decay = keep @ mom
    beta = log_keep.cumsum(-1).exp()
    eta_prod = log_eta.cumsum(-1).exp()  # P_{s,0}
    gamma = keep @ eta_prod.unsqueeze(-1)
    rows = torch.arange(decay.shape[0], device=decay.device)
    return ChunkGates(
        decay=decay,
        beta=beta.unsqueeze(-1),
        gamma=gamma,
        end_decay=decay[rows, :, last],
        end_momentum=mom[rows, :, last],
        end_beta=beta[rows, :, last][..., None, None],
        end_gamma=gamma[rows, :, last].unsqueeze(-1),
        end_rho=eta_prod[rows, :, last][..., None, None],
    )


def _to_chunks(x: Tensor, b: int, pad_value: float = 0.0) -> Tensor:
    """[B, T, H, *f] -> [nc, B*H, b, *f], padding T up to a multiple of b."""
    batch, length, heads = x.shape[:3]
    x = x.transpose(1, 2)
    n_chunks = -(-length // b)
    if n_chunks * b != length:
        pad = [0, 0] * (x.dim() - 3) + [0, n_chunks * b - length]
        x = F.pad(x, pad, value=pad_value)
    x = x.reshape(batch * heads, n_chunks, b, *x.shape[3:])
    return x.transpose(0, 1).contiguous()


def _log_gates(eta: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """log(1−α), log η, clamped so that α = 1 or η = 0 give a finite log and finite gradients."""
    info = torch.finfo(alpha.dtype)
    log_keep = torch.log1p(-alpha.clamp(max=1 - info.eps / 2))
    log_eta = eta.clamp(min=info.tiny).log()
    return log_keep, log_eta


def _clip_factor(norm_sq: Tensor, max_norm: float) -> Tensor:
    """min(1, max_norm / ‖u‖_F) from ‖u‖_F² (finite gradient at ‖u‖ = 0)."""
    return max_norm * norm_sq.clamp(min=max_norm * max_norm).rsqrt()


def _state_to_carry(state: MemoryState) -> list[Tensor]:
    """[B, H, out, in] weights and momentum -> [B*H, out, 2 in] = [W | S] per layer."""
    carry = []
    for w, s in zip(state.weights, state.momentum, strict=True):
        batch, heads, out, width = w.shape
        carry.append(torch.cat([w, s], -1).reshape(batch * heads, out, 2 * width))
    return carry


def _carry_to_state(carry: list[Tensor], batch: int, heads: int) -> MemoryState:
    weights, momentum = [], []
    for ws in carry:
        w, s = ws.reshape(batch, heads, ws.shape[1], ws.shape[2]).chunk(2, dim=-1)
        weights.append(w)
        momentum.append(s)
    return MemoryState(tuple(weights), tuple(momentum))


class _Chunk(NamedTuple):
    """State-independent tensors of one chunk (views into the all-chunk precomputation)."""

    keys: Tensor  # [N, b, D]
    values: Tensor  # [N, b, D] (values − keys for a residual memory)
    scale: Tensor  # [N, b, 1]: 2θ
    key_norm_sq: Tensor  # [N, b]: ‖k‖²
    query_base: Tensor  # [N, b, 2D]: [β q | γ q]
    query_scores: Tensor  # [N, b, b]: (Q Kᵀ) ⊙ D
    key_update: Tensor  # [N, b, 2D]: [D_{b,:} k | P_{b,:} k]
    decay: Tensor  # [N, b, b]
    beta: Tensor  # [N, b, 1]
    gamma: Tensor  # [N, b, 1]
    end_decay: Tensor  # [N, b]
    end_momentum: Tensor  # [N, b]
    end_beta: Tensor  # [N, 1, 1]
    end_gamma: Tensor  # [N, 1, 1]
    end_rho: Tensor  # [N, 1, 1]


def _precompute(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    b: int,
    residual: bool,
) -> list[_Chunk]:
    """Everything the chunk loop needs that does not depend on the memory state, per chunk."""
    length = q.shape[1]
    queries, keys, values = (_to_chunks(x, b) for x in (q, k, v))
    if residual:
        values = values - keys
    log_keep, log_eta = _log_gates(eta, alpha)
    last = torch.full((queries.shape[0],), b - 1, device=q.device)
    last[-1] = (length - 1) % b
    gates = chunk_gates(_to_chunks(log_keep, b), _to_chunks(log_eta, b), last)
    scale = 2 * _to_chunks(theta, b).unsqueeze(-1)
    query_base = torch.cat([gates.beta * queries, gates.gamma * queries], -1)
    query_scores = (queries @ keys.transpose(-1, -2)) * gates.decay
    key_update = torch.cat(
        [gates.end_decay.unsqueeze(-1) * keys, gates.end_momentum.unsqueeze(-1) * keys], -1
    )
    per_chunk = (
        keys,
        values,
        scale,
        keys.square().sum(-1),
        query_base,
        query_scores,
        key_update,
        *gates,
    )
    return [_Chunk(*parts) for parts in zip(*(x.unbind(0) for x in per_chunk), strict=True)]


def _key_pass(
    carry: list[Tensor], chunk: _Chunk, act: Activation
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Surprise errors at W_0: (δ_l [N, b, out_l] per layer, layer inputs h_{l-1}, ‖u‖_F²/4).

    u_l = 2 δ_l h_{l-1}ᵀ per token; the factor 2 lives in ``chunk.scale``.
    """
    inputs, pre = [chunk.keys], []
    h = chunk.keys
    for layer, ws in enumerate(carry):
        z = h @ ws[..., : ws.shape[-1] // 2].transpose(-1, -2)
        if layer < len(carry) - 1:
            pre.append(z)
            h = act.fn(z)
            inputs.append(h)
    deltas = [z - chunk.values]
    for layer in range(len(carry) - 1, 0, -1):
        ws = carry[layer]
        deltas.append((deltas[-1] @ ws[..., : ws.shape[-1] // 2]) * act.grad(pre[layer - 1]))
    deltas.reverse()
    norm_sq = chunk.key_norm_sq * deltas[0].square().sum(-1)
    for delta, h in zip(deltas[1:], inputs[1:], strict=True):
        norm_sq = norm_sq + delta.square().sum(-1) * h.square().sum(-1)
    return deltas, inputs, norm_sq


def _end_state(ws: Tensor, delta: Tensor, key_update: Tensor, chunk: _Chunk) -> Tensor:
    """[W_b | S_b] from [W_0 | S_0] [N, out, 2 in], scaled errors [N, b, out], [D h | P h]."""
    w, s = ws.chunk(2, dim=-1)
    decayed = torch.cat([chunk.end_beta * w + chunk.end_gamma * s, chunk.end_rho * s], -1)
    return torch.baddbmm(decayed, delta.transpose(-1, -2), key_update, alpha=-1)


def _chunk_step(
    carry: list[Tensor], chunk: _Chunk, act: Activation, max_norm: float | None
) -> tuple[Tensor, list[Tensor]]:
    """One chunk: outputs [N, b, D] and the end carry."""
    deltas, inputs, norm_sq = _key_pass(carry, chunk, act)
    scale = chunk.scale
    if max_norm is not None:
        scale = scale * _clip_factor(4 * norm_sq, max_norm).unsqueeze(-1)
    x, new_carry = None, []
    for layer, ws in enumerate(carry):
        delta = deltas[layer] * scale
        if layer == 0:
            query_base, scores, key_update = chunk.query_base, chunk.query_scores, chunk.key_update
        else:
            h = inputs[layer]
            query_base = torch.cat([chunk.beta * x, chunk.gamma * x], -1)
            scores = (x @ h.transpose(-1, -2)) * chunk.decay
            key_update = torch.cat(
                [chunk.end_decay.unsqueeze(-1) * h, chunk.end_momentum.unsqueeze(-1) * h], -1
            )
        z = torch.baddbmm(query_base @ ws.transpose(-1, -2), scores, delta, alpha=-1)
        x = z if layer == len(carry) - 1 else act.fn(z)
        new_carry.append(_end_state(ws, delta, key_update, chunk))
    return x, new_carry


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
) -> tuple[Tensor, MemoryState]:
    """Chunked dual-form neural memory; same arguments and results as ``naive_memory``.

    q, k, v: [B, T, H, D]; theta, eta, alpha: [B, T, H]; state [B, H, out, in] per layer; all one
    floating dtype, T >= 1. Returns (y [B, T, H, D], end state).
    """
    act = get_activation(activation)
    batch, length, heads, dim = q.shape
    b = min(chunk_size, length)
    chunks = _precompute(q, k, v, theta, eta, alpha, b, residual)
    carry = _state_to_carry(state)
    outputs = []
    for chunk in chunks:
        y, carry = _chunk_step(carry, chunk, act, max_surprise_norm)
        outputs.append(y)
    y = torch.stack(outputs, 0).reshape(len(chunks), batch, heads, b, dim)
    y = y.permute(1, 0, 3, 2, 4).reshape(batch, len(chunks) * b, heads, dim)[:, :length]
    if residual:
        y = y + q
    return y, _carry_to_state(carry, batch, heads)
