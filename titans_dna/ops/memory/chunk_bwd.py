"""Backward pass of the chunked neural memory, written out (the reverse of ``chunk_fwd.py``).

The key pass's slopes and backpropagated errors are recomputed first, for all chunks at once.
Retrieval depends on the states only through the chunk-start states the forward pass saved, so
its backward runs for all chunks at once too; then a reverse loop over chunks carries the gradient
of the state (dW, dS) from each chunk's end to its start through the end-of-chunk update and the
surprise (key pass, clipping, backpropagated errors: this is where σ'' enters). Each function
mirrors one forward function; every product is a batched matrix product over N = B*H.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from titans_dna.ops.memory.activations import Activation
from titans_dna.ops.memory.chunk_fwd import (
    ChunkInputs,
    Saved,
    backpropagate,
    combine,
    end_row,
    negated_product,
    pair_sums,
    weigh_pairs,
)


class RetrievalGrads(NamedTuple):
    """Gradients from retrieval, [nc, N, ...] (per layer where a list)."""

    starts: list[Tensor]  # d(W_0 | S_0) [nc, N, out, 2, in]
    deltas: list[Tensor]  # dΔ_l (scaled errors) [nc, N, b, out]
    inputs: list[Tensor | None]  # dh_l (None for l = 0: the keys' score gradient is d_first_scores)
    first_inputs: Tensor
    first_scores: Tensor
    decay: Tensor | None  # None for a linear memory
    retrieval: Tensor | None
    damping: Tensor | None  # dn_t [nc, N, b, 1] (None for the paper's update)


class KeyErrors(NamedTuple):
    """The key pass's recomputed values, stacked over chunks [nc, N, b, *]."""

    slopes: list[Tensor]  # σ'(z_l) of the hidden layers
    backs: list[Tensor]  # e_l = δ_{l+1} W_{l+1} of the hidden layers
    deltas: list[Tensor]  # δ_l per layer
    scaled: list[Tensor]  # Δ_l = s δ_l per layer


def recompute_key_errors(saved: Saved, act: Activation) -> KeyErrors:
    """δ_l = (δ_{l+1} W_{l+1}) ⊙ σ'(z_l) of ``chunk_fwd.key_pass``, for all chunks at once."""
    slopes = [act.grad(z) for z in saved.pre]
    weights = [ws[:, :, :, 0] for ws in saved.starts]
    backs, deltas = backpropagate(saved.out_delta, weights, slopes)
    return KeyErrors(slopes, backs, deltas, [d * saved.clip.scale for d in deltas])


def retrieve_backward(
    dy: Tensor, chunks: ChunkInputs, saved: Saved, scaled: list[Tensor], act: Activation
) -> RetrievalGrads:
    """Reverse of ``chunk_fwd.retrieve`` for all chunks at once; dy [nc, N, b, D], scaled
    errors Δ_l [nc, N, b, out] per layer."""
    shape = dy.shape[:2]
    flat = ChunkInputs(*(x.flatten(0, 1) for x in chunks))
    depth = len(saved.starts)
    starts = [s.flatten(0, 1) for s in saved.starts]  # [M, out, 2, in]
    inputs = [h.flatten(0, 1) for h in saved.inputs]
    deltas = [d.flatten(0, 1) for d in scaled]
    damping = None if saved.damping is None else saved.damping.factor.flatten(0, 1)
    d_starts, d_deltas, d_inputs = [None] * depth, [None] * depth, [None] * depth
    d_decay = d_retrieval = d_damping = None
    dz = dy.flatten(0, 1)
    for layer in range(depth - 1, -1, -1):
        if layer == 0:
            undamped = flat.first_scores
        else:
            x, slope = act.value_and_grad(saved.query_pre[layer - 1])
            raw = saved.query_scores[layer - 1]
            undamped = raw * flat.decay
        scores = undamped if damping is None else undamped * damping
        d_scores = negated_product(dz, deltas[layer].mT)
        d_deltas[layer] = negated_product(scores.mT, dz).unflatten(0, shape)
        if damping is not None:  # scores = n ⊙ (undamped scores), row by row
            d_damp = (d_scores * undamped).sum(-1, keepdim=True)
            d_damping = d_damp if d_damping is None else d_damping + d_damp
            d_scores = d_scores * damping
        if layer == 0:  # Z = [β q | γ q] [W_0 | S_0]ᵀ − scores Δ
            d_starts[0] = (dz.mT @ flat.first_inputs).view_as(starts[0]).unflatten(0, shape)
            d_first_inputs, d_first_scores = dz @ starts[0].flatten(-2), d_scores
            continue
        # Z = β (X W_0ᵀ) + γ (X S_0ᵀ) − scores Δ, the state's rows paired with (β dz, γ dz)
        pairs = weigh_pairs(dz, flat.retrieval)
        d_starts[layer] = (pairs.mT @ x).view_as(starts[layer]).unflatten(0, shape)
        d_ret = pair_sums(dz, saved.query_projected[layer - 1])
        d_dec = d_scores * raw
        d_retrieval = d_ret if d_retrieval is None else d_retrieval + d_ret
        d_decay = d_dec if d_decay is None else d_decay + d_dec
        d_raw = d_scores * flat.decay
        dx = torch.baddbmm(pairs @ starts[layer].flatten(1, 2), d_raw, inputs[layer])
        d_inputs[layer] = (d_raw.mT @ x).unflatten(0, shape)
        dz = dx * slope

    def unflat(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.unflatten(0, shape)

    return RetrievalGrads(
        d_starts,
        d_deltas,
        d_inputs,
        unflat(d_first_inputs),
        unflat(d_first_scores),
        unflat(d_decay),
        unflat(d_retrieval),
        unflat(d_damping),
    )


class StepGrads(NamedTuple):
    """Gradients of one chunk's recurrence inputs (fields of ``ChunkInputs``), [N, ...]."""

    keys: Tensor
    values: Tensor
    scale: Tensor
    key_norm_sq: Tensor | None
    end_weights: Tensor | None
    key_update: Tensor
    end_keep: Tensor
    end_gamma: Tensor
    decay: Tensor | None  # from the normalized update's curvature (None for the paper's)


class _Chunk(NamedTuple):
    """One chunk's saved forward values, [N, ...] (per layer where a list)."""

    starts: list[Tensor]
    inputs: list[Tensor]
    pre: list[Tensor]
    slopes: list[Tensor]
    backs: list[Tensor]
    deltas: list[Tensor]
    scaled: list[Tensor]
    scale: Tensor
    factor: Tensor | None
    norm_sq: Tensor | None
    damping: Tensor | None  # n_t [N, b, 1] (None for the paper's update)
    norms: list[Tensor] | None  # ‖C_{l,t}‖_F [N, b] per layer


def _end_state_backward(
    d_end: list[Tensor],
    chunk: _Chunk,
    inputs: ChunkInputs,
    c: int,
    ret: RetrievalGrads,
    applied: list[Tensor],
) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], tuple]:
    """Reverse of ``chunk_fwd.end_state`` for every layer of chunk c, whose update applied the
    scaled errors ``applied`` (Δ_l, damped by the end row's n for the normalized update).

    Returns (d(W_0 | S_0) from the end state and retrieval, d applied_l (the end state's part),
    dh_l (l >= 1, with the retrieval part), (d_end_weights, d_key_update, d_end_keep,
    d_end_gamma)).
    """
    end_keep, end_gamma, end_weights = (
        inputs.end_keep[c],
        inputs.end_gamma[c],
        inputs.end_weights[c],
    )
    d_starts, d_scaled, d_inputs = [], [], [None]
    d_keep = d_gamma = d_weights = d_key_update = None
    for layer, (g, ws) in enumerate(zip(d_end, chunk.starts, strict=True)):
        d_ws = g * end_keep + ret.starts[layer][c]
        d_ws[:, :, 1].addcmul_(g[:, :, 0], end_gamma)
        d_starts.append(d_ws)
        keep = (g * ws).sum((1, 3), keepdim=True)
        gamma = (g[:, :, 0] * ws[:, :, 1]).sum((1, 2)).view(-1, 1, 1)
        d_keep = keep if d_keep is None else d_keep + keep
        d_gamma = gamma if d_gamma is None else d_gamma + gamma
        if layer == 0:  # − Δᵀ [D_{r,:} k | P_{r,:} k]
            flat = g.flatten(-2)  # [N, out, 2 in]
            d_scaled.append(negated_product(inputs.key_update[c], flat.mT))
            d_key_update = negated_product(applied[0], flat)
            continue
        rows = g.flatten(1, 2)  # [N, 2 out, in]: − (D_{r,:} Δ, P_{r,:} Δ)ᵀ h
        h = chunk.inputs[layer]
        d_pairs = negated_product(h, rows.mT)
        d_scaled.append(combine(d_pairs, end_weights))
        pairs = weigh_pairs(applied[layer], end_weights)
        d_inputs.append(torch.baddbmm(ret.inputs[layer][c], pairs, rows, alpha=-1))
        weights = pair_sums(applied[layer], d_pairs)
        d_weights = weights if d_weights is None else d_weights + weights
    return d_starts, d_scaled, d_inputs, (d_weights, d_key_update, d_keep, d_gamma)


def _clip_backward(
    d_scaled: list[Tensor],
    d_inputs: list[Tensor | None],
    chunk: _Chunk,
    scale: Tensor,
    key_norm_sq: Tensor,
    max_norm: float | None,
    d_s: Tensor | None,
) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """Reverse of Δ_l = s δ_l, s = 2θ c(‖u‖²): (dδ_l, d(2θ), d‖k‖²); adds to d_inputs.

    d_s: the gradient of s from elsewhere (the normalized update's curvature), or None.
    """
    d_deltas = [d * chunk.scale for d in d_scaled]
    from_errors = sum(
        torch.linalg.vecdot(d, delta) for d, delta in zip(d_scaled, chunk.deltas, strict=True)
    ).unsqueeze(-1)
    d_s = from_errors if d_s is None else from_errors + d_s
    if max_norm is None:
        return d_deltas, d_s, None
    factor, norm_sq = chunk.factor, chunk.norm_sq
    # c = m max(n, m²)^(-1/2): dc/dn = -c / (2n) above the threshold, 0 below
    d_factor = d_s * scale
    d_norm = torch.where(norm_sq > max_norm * max_norm, -0.5 * d_factor * factor / norm_sq, 0)
    d_norm4 = 4 * d_norm  # n = 4 (‖k‖² ‖δ_0‖² + Σ_{l>=1} ‖h_l‖² ‖δ_l‖²)
    d_deltas[0] = d_deltas[0] + (2 * d_norm4 * key_norm_sq.unsqueeze(-1)) * chunk.deltas[0]
    d_key_norm_sq = d_norm4.squeeze(-1) * torch.linalg.vecdot(chunk.deltas[0], chunk.deltas[0])
    for layer in range(1, len(d_deltas)):
        h, delta = chunk.inputs[layer], chunk.deltas[layer]
        h_sq = torch.linalg.vecdot(h, h).unsqueeze(-1)
        delta_sq = torch.linalg.vecdot(delta, delta).unsqueeze(-1)
        d_deltas[layer] = d_deltas[layer] + (2 * d_norm4 * h_sq) * delta
        d_inputs[layer] = d_inputs[layer] + (2 * d_norm4 * delta_sq) * h
    return d_deltas, d_s * factor, d_key_norm_sq


def _key_pass_backward(
    d_deltas: list[Tensor], d_inputs: list[Tensor | None], chunk: _Chunk, act: Activation
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Reverse of ``chunk_fwd.key_pass``: (dW_0 per layer, d keys, d values)."""
    weights = [ws[:, :, 0] for ws in chunk.starts]
    depth = len(weights)
    d_weights: list[Tensor | None] = [None] * depth  # layers >= 1: first term in the loop
    d_pre = []
    for layer in range(depth - 1):  # δ_l = (δ_{l+1} W_{l+1}) ⊙ σ'(z_l)
        d_back = d_deltas[layer] * chunk.slopes[layer]
        d_pre.append(d_deltas[layer] * chunk.backs[layer] * act.grad2(chunk.pre[layer]))
        d_deltas[layer + 1] = torch.baddbmm(d_deltas[layer + 1], d_back, weights[layer + 1].mT)
        d_weights[layer + 1] = chunk.deltas[layer + 1].mT @ d_back
    dz = d_deltas[-1]  # δ_{L-1} = z_{L-1} − v
    for layer in range(depth - 1, 0, -1):  # z_l = h_l W_lᵀ, h_l = σ(z_{l-1})
        d_weights[layer] = d_weights[layer] + dz.mT @ chunk.inputs[layer]
        dh = torch.baddbmm(d_inputs[layer], dz, weights[layer])
        dz = torch.addcmul(d_pre[layer - 1], dh, chunk.slopes[layer - 1])
    d_weights[0] = dz.mT @ chunk.inputs[0]
    return d_weights, dz @ weights[0], -d_deltas[-1]


def curvature_backward(
    d_factor: Tensor, chunk: _Chunk, decay: Tensor
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Reverse of ``chunk_fwd.curvature_damping``: (ds [N, b, 1], dD [N, b, b], dh_l per layer)
    from dn [N, b, 1].

    With w = D diag(s) and q_l = ‖C_l‖_F² = rows of (w (G_l ⊙ G_l)) ⊙ w: dw = 2 dq (w G²),
    d(G²) = wᵀ diag(dq) w, dG = 2 G ⊙ d(G²), dh = 2 dG h (G = h hᵀ and dG are symmetric).
    """
    d_spread = -(d_factor * chunk.damping.square()).squeeze(-1)  # n = 1 / (1 + λ)
    weighted = decay * chunk.scale.mT
    d_weighted = torch.zeros_like(weighted)
    d_inputs = []
    for h, norm in zip(chunk.inputs, chunk.norms, strict=True):
        gram = h @ h.mT
        d_q = torch.where(norm > 0, d_spread / (2 * norm.clamp(min=1e-30)), 0).unsqueeze(-1)
        d_weighted += 2 * d_q * (weighted @ gram.square())
        d_gram = 2 * gram * (weighted.mT @ (d_q * weighted))
        d_inputs.append(2 * d_gram @ h)
    d_scale = (d_weighted * decay).sum(-2).unsqueeze(-1)
    return d_scale, d_weighted * chunk.scale.mT, d_inputs


def _chunk(saved: Saved, errors: KeyErrors, c: int) -> _Chunk:
    clipped, damping = saved.clip, saved.damping
    return _Chunk(
        [x[c] for x in saved.starts],
        [x[c] for x in saved.inputs],
        [x[c] for x in saved.pre],
        [x[c] for x in errors.slopes],
        [x[c] for x in errors.backs],
        [x[c] for x in errors.deltas],
        [x[c] for x in errors.scaled],
        clipped.scale[c],
        None if clipped.factor is None else clipped.factor[c],
        None if clipped.norm_sq is None else clipped.norm_sq[c],
        None if damping is None else damping.factor[c],
        None if damping is None else [x[c] for x in damping.norms],
    )


def step_backward(
    d_end: list[Tensor],
    inputs: ChunkInputs,
    chunk: _Chunk,
    ret: RetrievalGrads,
    c: int,
    act: Activation,
    max_norm: float | None,
    row: int,
) -> tuple[list[Tensor], StepGrads]:
    """Gradient of chunk c's start state (d(W_0 | S_0) per layer) from its end state's, and of
    the chunk's inputs; ``row`` is the chunk's last real row."""
    retrieved = [d[c] for d in ret.deltas]
    if chunk.damping is None:
        d_starts, d_applied, d_inputs, gates = _end_state_backward(
            d_end, chunk, inputs, c, ret, chunk.scaled
        )
        d_scaled = [r + d for r, d in zip(retrieved, d_applied, strict=True)]
        d_s = d_decay = d_curvature = None
    else:  # the end state applied n_row Δ_l
        end = chunk.damping[:, row : row + 1]
        applied = [delta * end for delta in chunk.scaled]
        d_starts, d_applied, d_inputs, gates = _end_state_backward(
            d_end, chunk, inputs, c, ret, applied
        )
        d_scaled = [torch.addcmul(r, d, end) for r, d in zip(retrieved, d_applied, strict=True)]
        d_factor = ret.damping[c].clone()
        d_factor[:, row, 0] += sum(
            (d * delta).sum((-1, -2)) for d, delta in zip(d_applied, chunk.scaled, strict=True)
        )
        d_s, d_decay, d_curvature = curvature_backward(d_factor, chunk, inputs.decay[c])
        for layer in range(1, len(d_inputs)):
            d_inputs[layer] = d_inputs[layer] + d_curvature[layer]
    d_deltas, d_scale, d_key_norm_sq = _clip_backward(
        d_scaled, d_inputs, chunk, inputs.scale[c], inputs.key_norm_sq[c], max_norm, d_s
    )
    d_weights, d_keys, d_values = _key_pass_backward(d_deltas, d_inputs, chunk, act)
    if d_curvature is not None:
        d_keys = d_keys + d_curvature[0]
    for d_ws, d_w in zip(d_starts, d_weights, strict=True):
        d_ws[:, :, 0] += d_w
    d_end_weights, d_key_update, d_end_keep, d_end_gamma = gates
    grads = StepGrads(
        d_keys, d_values, d_scale, d_key_norm_sq, d_end_weights, d_key_update, d_end_keep,
        d_end_gamma, d_decay,
    )  # fmt: skip
    return d_starts, grads


def backward(
    dy: Tensor,
    d_end: list[Tensor],
    inputs: ChunkInputs,
    saved: Saved,
    act: Activation,
    max_norm: float | None,
    tail: int | None,
) -> tuple[list[Tensor], ChunkInputs]:
    """Gradients of the start carry (per layer) and of every ``ChunkInputs`` field (or None);
    ``tail`` as in ``chunk_fwd.forward``."""
    errors = recompute_key_errors(saved, act)
    ret = retrieve_backward(dy, inputs, saved, errors.scaled, act)
    n_chunks, size = inputs.keys.shape[0], inputs.keys.shape[2]
    per_chunk = []
    for c in range(n_chunks - 1, -1, -1):
        chunk = _chunk(saved, errors, c)
        row = end_row(c, n_chunks, size, tail or 0)
        d_end, grads = step_backward(d_end, inputs, chunk, ret, c, act, max_norm, row)
        per_chunk.append(grads)
    per_chunk.reverse()

    def stacked(field: str) -> Tensor | None:
        values = [getattr(g, field) for g in per_chunk]
        return None if values[0] is None else torch.stack(values)

    d_inputs = ChunkInputs(
        keys=stacked("keys"),
        values=stacked("values"),
        scale=stacked("scale"),
        key_norm_sq=stacked("key_norm_sq"),
        end_weights=stacked("end_weights"),
        key_update=stacked("key_update"),
        end_keep=stacked("end_keep"),
        end_gamma=stacked("end_gamma"),
        first_inputs=ret.first_inputs,
        first_scores=ret.first_scores,
        decay=_sum(ret.decay, stacked("decay")),
        retrieval=ret.retrieval,
    )
    return d_end, d_inputs


def _sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """a + b where either may be None (no gradient)."""
    if a is None or b is None:
        return b if a is None else a
    return a + b
