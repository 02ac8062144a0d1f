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

Only the state recurrence is sequential. The computation runs in three parts:

1. everything that does not depend on the state (gate matrices, the first layer's Q Kᵀ ⊙ D)
   for all chunks at once, before the loop;
2. a Python loop over chunks that carries (W, S): the surprise at W_0 (key forward pass and
   backpropagated errors) and the end-of-chunk state, nothing else;
3. retrieval (the formula above) from the chunk-start states the loop recorded, batched over a
   group of chunks (``RETRIEVAL_MATRICES``) each time the loop has completed one.

W and S of a layer are carried interleaved as (W | S) [out, 2, in]: the retrieval's two products
and the rank-b update of both are single matrix products. Products of gates are exponentials of
sums of log-gates over index ranges (never divisions of cumulative products, which underflow).
Autograd differentiates the whole computation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from titans_dna.ops.memory.activations import Activation, get_activation
from titans_dna.ops.memory.state import MemoryState

# Retrieval batches this many (chunk, batch*head) matrices: products large enough to run
# efficiently on several threads, working sets small enough to stay in cache.
RETRIEVAL_MATRICES = 64
# Chunks per window of the all-chunk precomputation (bounds inference memory on long inputs).
WINDOW_CHUNKS = 256


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


def _clip_factor(norm_sq: Tensor, max_norm: float) -> Tensor:
    """min(1, max_norm / ‖u‖_F) from ‖u‖_F² (finite gradient at ‖u‖ = 0)."""
    return max_norm * norm_sq.clamp(min=max_norm * max_norm).rsqrt()


class _Step(NamedTuple):
    """What the state recurrence needs of one chunk (views into the all-chunk tensors)."""

    keys: Tensor  # [N, b, D]
    values: Tensor  # [N, b, D] (values − keys for a residual memory)
    scale: Tensor  # [N, b, 1]: 2θ
    key_norm_sq: Tensor  # [N, b]: ‖k‖²
    end_weights: Tensor  # [N, b, 2, 1]
    key_update: Tensor  # [N, b, 2D]: [D_{r,:} k | P_{r,:} k], the first layer's (state-free)
    end_keep: Tensor  # [N, 1, 2, 1]
    end_gamma: Tensor  # [N, 1, 1]


class _Surprise(NamedTuple):
    """Per-layer results of one chunk's surprise, for retrieval: [N, b, *] each."""

    deltas: list[Tensor]  # scaled errors 2θc δ_l
    inputs: list[Tensor]  # key-side layer inputs h_{l-1} at W_0 (h_0 = keys)


def _surprise(
    carry: list[Tensor], step: _Step, act: Activation, max_norm: float | None
) -> _Surprise:
    """Errors δ_l at W_0 (u_l = 2 δ_l h_{l-1}ᵀ), scaled by 2θ and the clip factor."""
    weights = [ws[:, :, 0] for ws in carry]  # W_0 (one view each: one gradient to scatter back)
    inputs, slopes = [step.keys], []
    h = step.keys
    for layer, w in enumerate(weights):
        z = h @ w.mT
        if layer < len(weights) - 1:
            h, slope = act.value_and_grad(z)
            inputs.append(h)
            slopes.append(slope)
    deltas = [z - step.values]
    for layer in range(len(weights) - 1, 0, -1):
        deltas.append((deltas[-1] @ weights[layer]) * slopes[layer - 1])
    deltas.reverse()
    scale = step.scale
    if max_norm is not None:
        # ‖u‖_F² = 4 Σ_l ‖δ_l‖² ‖h_{l-1}‖² (outer products), never materialised
        norm_sq = step.key_norm_sq * torch.linalg.vecdot(deltas[0], deltas[0])
        for delta, h in zip(deltas[1:], inputs[1:], strict=True):
            norm_sq = norm_sq + torch.linalg.vecdot(delta, delta) * torch.linalg.vecdot(h, h)
        scale = scale * _clip_factor(4 * norm_sq, max_norm).unsqueeze(-1)
    return _Surprise([delta * scale for delta in deltas], inputs)


def _weigh(x: Tensor, weights: Tensor) -> Tensor:
    """[a x | c x] [..., 2 f] from x [..., f] and weights (a, c) [..., 2, 1]."""
    return (x.unsqueeze(-2) * weights).flatten(-2)


def _end_state(ws: Tensor, delta: Tensor, weighted: Tensor, step: _Step) -> Tensor:
    """(W_b | S_b) [N, out, 2, in] from (W_0 | S_0), scaled errors [N, b, out] and the layer's
    weighted key-side inputs [D_{r,:} h | P_{r,:} h] [N, b, 2 in]."""
    decayed = ws * step.end_keep
    decayed[:, :, 0].addcmul_(ws[:, :, 1], step.end_gamma)
    return torch.baddbmm(decayed.flatten(-2), delta.mT, weighted, alpha=-1).unflatten(-1, (2, -1))


class _Queries(NamedTuple):
    """What retrieval needs of a group of chunks besides the state: [M, *] with M = chunks*N."""

    first_inputs: Tensor  # [M, b, 2D]: [β q | γ q], the first layer's (state-free)
    first_scores: Tensor  # [M, b, b]: (Q Kᵀ) ⊙ D, the first layer's scores (state-free)
    decay: Tensor  # [M, b, b]
    retrieval: Tensor  # [M, b, 2, 1]: (β_t, γ_t)


def _retrieve(
    queries: _Queries, starts: list[Tensor], surprise: _Surprise, act: Activation
) -> Tensor:
    """Outputs [M, b, D] of a group of chunks at once from their start states.

    starts: (W_0 | S_0) [M, out, 2, in] per layer; surprise: [M, b, *] per layer.
    """
    z = _dual_layer(queries.first_inputs, starts[0], queries.first_scores, surprise.deltas[0])
    for layer in range(1, len(starts)):
        x = act.fn(z)
        scores = (x @ surprise.inputs[layer].mT) * queries.decay
        weighted = _weigh(x, queries.retrieval)  # [β x | γ x]
        z = _dual_layer(weighted, starts[layer], scores, surprise.deltas[layer])
    return z


def _dual_layer(weighted: Tensor, ws: Tensor, scores: Tensor, delta: Tensor) -> Tensor:
    """Z = [β x | γ x] [W_0 | S_0]ᵀ − scores Δ: one layer's retrieval, [M, b, out]."""
    return torch.baddbmm(weighted @ ws.flatten(-2).mT, scores, delta, alpha=-1)


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


def _prepare(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    b: int,
    residual: bool,
) -> tuple[list[_Step], list[_Queries]]:
    """All state-free work, for every chunk at once: per-chunk steps, per-group retrieval inputs."""
    length = q.shape[1]
    queries, keys, values = (_to_chunks(x, b) for x in (q, k, v))
    if residual:
        values = values - keys
    log_keep, log_eta = _log_gates(eta, alpha)
    last = torch.full((queries.shape[0],), b - 1, device=q.device)
    last[-1] = (length - 1) % b
    gates = chunk_gates(_to_chunks(log_keep, b), _to_chunks(log_eta, b), last)
    step_parts = (
        keys,
        values,
        2 * _to_chunks(theta, b).unsqueeze(-1),
        torch.linalg.vecdot(keys, keys),
        gates.end_weights,
        _weigh(keys, gates.end_weights),
        gates.end_keep,
        gates.end_gamma,
    )
    steps = [_Step(*parts) for parts in zip(*(x.unbind(0) for x in step_parts), strict=True)]
    group = max(1, RETRIEVAL_MATRICES // queries.shape[1])
    first_scores = (queries @ keys.mT) * gates.decay
    query_parts = (_weigh(queries, gates.retrieval), first_scores, gates.decay, gates.retrieval)
    groups = [
        _Queries(*(x.flatten(0, 1) for x in parts))
        for parts in zip(*(x.split(group) for x in query_parts), strict=True)
    ]
    return steps, groups


def _advance(
    carry: list[Tensor], steps: list[_Step], act: Activation, max_norm: float | None
) -> tuple[list[Tensor], list[Tensor], _Surprise]:
    """Run the state recurrence over ``steps``.

    Returns (end carry, chunk-start states [chunks*N, out, 2, in] per layer, surprises
    [chunks*N, b, *] per layer).
    """
    starts, surprises = [], []
    for step in steps:
        starts.append(carry)
        surprises.append(_surprise(carry, step, act, max_norm))
        key_updates = [step.key_update]
        key_updates += [_weigh(h, step.end_weights) for h in surprises[-1].inputs[1:]]
        carry = [
            _end_state(ws, delta, update, step)
            for ws, delta, update in zip(carry, surprises[-1].deltas, key_updates, strict=True)
        ]
    stacked = _Surprise(
        [torch.cat(x) for x in zip(*(s.deltas for s in surprises), strict=True)],
        [torch.cat(x) for x in zip(*(s.inputs for s in surprises), strict=True)],
    )
    return carry, [torch.cat(x) for x in zip(*starts, strict=True)], stacked


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

    Long sequences run as consecutive windows of ``WINDOW_CHUNKS`` chunks (streaming the state
    between them, which equals one pass), so that the all-chunk gate matrices of inference take
    memory bounded by the window, not by T.
    """
    act = get_activation(activation)
    batch, length, heads, _ = q.shape
    b = min(chunk_size, length)
    window = WINDOW_CHUNKS * b
    carry = _state_to_carry(state)
    outputs = []
    for start in range(0, length, window):
        piece = (x[:, start : start + window] for x in (q, k, v, theta, eta, alpha))
        y, carry = _window(*piece, carry, b, act, residual, max_surprise_norm)
        outputs.append(y)
    y = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)
    return y, _carry_to_state(carry, batch, heads)


def _window(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    carry: list[Tensor],
    b: int,
    act: Activation,
    residual: bool,
    max_norm: float | None,
) -> tuple[Tensor, list[Tensor]]:
    """One window of chunks: (y [B, T, H, D], end carry)."""
    batch, length, heads, dim = q.shape
    steps, groups = _prepare(q, k, v, theta, eta, alpha, b, residual)
    outputs, done = [], 0
    for queries in groups:
        count = queries.first_scores.shape[0] // (batch * heads)
        carry, starts, surprise = _advance(carry, steps[done : done + count], act, max_norm)
        outputs.append(_retrieve(queries, starts, surprise, act))
        done += count
    y = torch.cat(outputs).view(-1, batch, heads, b, dim).permute(1, 0, 3, 2, 4)
    y = y.reshape(batch, -1, heads, dim)[:, :length]
    return (y + q if residual else y), carry
