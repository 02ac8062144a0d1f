"""Forward pass of the chunked neural memory: the state recurrence over chunks, then retrieval.

Shapes: N = B*H matrices per chunk, b tokens per chunk, a layer maps in -> out features; a
memory layer's state is carried as (W | S) [N, out, 2, in] (W and S interleaved along the
second-to-last axis, so [W | S] is one [out, 2 in] matrix). The math is in ``chunk.py``'s
docstring. Everything the backward pass needs is returned, nothing is recomputed there but
elementwise functions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from titans_dna.ops.memory.activations import Activation


class ChunkInputs(NamedTuple):
    """State-free inputs of every chunk, [nc, N, ...] each (computed by autograd beforehand)."""

    keys: Tensor  # [nc, N, b, D]
    values: Tensor  # [nc, N, b, D] (values − keys for a residual memory)
    scale: Tensor  # [nc, N, b, 1]: 2θ
    key_norm_sq: Tensor  # [nc, N, b]: ‖k‖²
    end_weights: Tensor  # [nc, N, b, 2, 1]: (D_{r,i}, P_{r,i}) on the chunk's last real row r
    key_update: Tensor  # [nc, N, b, 2D]: [D_{r,:} k | P_{r,:} k], the first layer's
    end_keep: Tensor  # [nc, N, 1, 2, 1]: (β_r, ρ)
    end_gamma: Tensor  # [nc, N, 1, 1]: γ_r
    first_inputs: Tensor  # [nc, N, b, 2D]: [β q | γ q], the first layer's query side
    first_scores: Tensor  # [nc, N, b, b]: (Q Kᵀ) ⊙ D, the first layer's scores
    decay: Tensor  # [nc, N, b, b]: D_{t,i}
    retrieval: Tensor  # [nc, N, b, 2, 1]: (β_t, γ_t)


class KeyPass(NamedTuple):
    """The surprise of one chunk at W_0, per layer l = 0..L-1 ([N, b, *] each)."""

    inputs: list[Tensor]  # h_l: layer inputs (h_0 = keys)
    pre: list[Tensor]  # z_l of the hidden layers (l < L-1)
    slopes: list[Tensor]  # σ'(z_l) of the hidden layers
    backs: list[Tensor]  # e_l = δ_{l+1} W_{l+1} of the hidden layers, δ_l = e_l ⊙ σ'(z_l)
    deltas: list[Tensor]  # δ_l, the surprise errors: u_l = 2 δ_l h_lᵀ (before θ and clipping)


class Clip(NamedTuple):
    """Per-token scale s = 2θc of the errors, with c = min(1, m / ‖u‖_F) ([N, b, 1] each)."""

    scale: Tensor
    factor: Tensor | None  # c (None without clipping)
    norm_sq: Tensor | None  # ‖u‖_F²


class Saved(NamedTuple):
    """What the backward pass needs."""

    passes: list[KeyPass]  # per chunk
    clips: list[Clip]  # per chunk
    starts: list[Tensor]  # per layer: chunk-start states (W_0 | S_0) [nc, N, out, 2, in]
    inputs: list[Tensor]  # per layer: key-side inputs h_l [nc, N, b, in]
    scaled: list[Tensor]  # per layer: scaled errors Δ_l = s δ_l [nc, N, b, out]
    query_pre: list[Tensor]  # retrieval pre-activations Z_l of the hidden layers [nc*N, b, *]
    query_scores: list[Tensor]  # retrieval X_l H_lᵀ of the layers after the first [nc*N, b, b]


def weigh(x: Tensor, weights: Tensor) -> Tensor:
    """[a x | c x] [..., 2 f] from x [..., f] and weights (a, c) [..., 2, 1]."""
    return (x.unsqueeze(-2) * weights).flatten(-2)


def key_pass(weights: list[Tensor], keys: Tensor, values: Tensor, act: Activation) -> KeyPass:
    """Forward through M(·; W_0) on the keys and back: errors δ_l of ‖M(k) − v‖²/2."""
    inputs, pre, slopes = [keys], [], []
    h = keys
    for layer, w in enumerate(weights):
        z = h @ w.mT
        if layer < len(weights) - 1:
            h, slope = act.value_and_grad(z)
            inputs.append(h)
            pre.append(z)
            slopes.append(slope)
    deltas, backs = [z - values], []
    for layer in range(len(weights) - 1, 0, -1):
        backs.append(deltas[-1] @ weights[layer])
        deltas.append(backs[-1] * slopes[layer - 1])
    return KeyPass(inputs, pre, slopes, backs[::-1], deltas[::-1])


def surprise_norm_sq(passed: KeyPass, key_norm_sq: Tensor) -> Tensor:
    """‖u‖_F² = 4 Σ_l ‖δ_l‖² ‖h_l‖² [N, b, 1] (norms of outer products, never materialised)."""
    norm_sq = key_norm_sq * torch.linalg.vecdot(passed.deltas[0], passed.deltas[0])
    for delta, h in zip(passed.deltas[1:], passed.inputs[1:], strict=True):
        norm_sq = norm_sq + torch.linalg.vecdot(delta, delta) * torch.linalg.vecdot(h, h)
    return 4 * norm_sq.unsqueeze(-1)


def clip(passed: KeyPass, scale: Tensor, key_norm_sq: Tensor, max_norm: float | None) -> Clip:
    """s = 2θ min(1, max_norm / ‖u‖_F), written with rsqrt(max(‖u‖², m²)) (finite at ‖u‖ = 0)."""
    if max_norm is None:
        return Clip(scale, None, None)
    norm_sq = surprise_norm_sq(passed, key_norm_sq)
    factor = max_norm * norm_sq.clamp(min=max_norm * max_norm).rsqrt()
    return Clip(scale * factor, factor, norm_sq)


def end_state(
    ws: Tensor, delta: Tensor, update: Tensor, end_keep: Tensor, end_gamma: Tensor
) -> Tensor:
    """(W_b | S_b) = (β_r W_0 + γ_r S_0 | ρ S_0) − Δᵀ [D_{r,:} h | P_{r,:} h].

    ws [N, out, 2, in]; delta: scaled errors Δ [N, b, out]; update [N, b, 2 in].
    """
    decayed = ws * end_keep
    decayed[:, :, 0].addcmul_(ws[:, :, 1], end_gamma)
    return torch.baddbmm(decayed.flatten(-2), delta.mT, update, alpha=-1).unflatten(-1, (2, -1))


def recurrence(
    carry: list[Tensor], chunks: ChunkInputs, act: Activation, max_norm: float | None
) -> tuple[list[Tensor], list[list[Tensor]], list[KeyPass], list[Clip], list[list[Tensor]]]:
    """Run the state over all chunks.

    Returns (end carry, and per chunk: start states, key pass, clip, scaled errors Δ_l = s δ_l).
    """
    starts, passes, clips, scaled = [], [], [], []
    for c in range(chunks.keys.shape[0]):
        starts.append(carry)
        passed = key_pass([ws[:, :, 0] for ws in carry], chunks.keys[c], chunks.values[c], act)
        clipped = clip(passed, chunks.scale[c], chunks.key_norm_sq[c], max_norm)
        updates = [chunks.key_update[c]]
        updates += [weigh(h, chunks.end_weights[c]) for h in passed.inputs[1:]]
        scaled.append([delta * clipped.scale for delta in passed.deltas])
        carry = [
            end_state(ws, delta, update, chunks.end_keep[c], chunks.end_gamma[c])
            for ws, delta, update in zip(carry, scaled[-1], updates, strict=True)
        ]
        passes.append(passed)
        clips.append(clipped)
    return carry, starts, passes, clips, scaled


def retrieve(
    chunks: ChunkInputs, starts: list[Tensor], inputs: list[Tensor], deltas: list[Tensor], act
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Outputs of all chunks at once; M = nc*N rows of matrices.

    starts (W_0 | S_0) [M, out, 2, in], inputs h_l [M, b, in], scaled errors Δ_l [M, b, out] per
    layer. Returns (y [M, b, D], hidden pre-activations Z_l, raw scores X_l H_lᵀ of layers >= 1).
    """
    flat = ChunkInputs(*(x.flatten(0, 1) for x in chunks))
    z = dual_layer(flat.first_inputs, starts[0], flat.first_scores, deltas[0])
    pre, raw_scores = [], []
    for layer in range(1, len(starts)):
        pre.append(z)
        x = act.fn(z)
        raw_scores.append(x @ inputs[layer].mT)
        weighted = weigh(x, flat.retrieval)  # [β x | γ x]
        z = dual_layer(weighted, starts[layer], raw_scores[-1] * flat.decay, deltas[layer])
    return z, pre, raw_scores


def dual_layer(weighted: Tensor, ws: Tensor, scores: Tensor, delta: Tensor) -> Tensor:
    """Z = [β x | γ x] [W_0 | S_0]ᵀ − scores Δ: one layer's retrieval, [M, b, out]."""
    return torch.baddbmm(weighted @ ws.flatten(-2).mT, scores, delta, alpha=-1)


def forward(
    carry: list[Tensor], chunks: ChunkInputs, act: Activation, max_norm: float | None
) -> tuple[Tensor, list[Tensor], Saved]:
    """The whole forward pass: (y [nc, N, b, D], end carry, what the backward pass needs)."""
    carry, starts, passes, clips, scaled = recurrence(carry, chunks, act, max_norm)

    def stacked(per_chunk: list) -> list[Tensor]:
        """Per chunk, per layer [N, *] -> per layer [nc, N, *] (what retrieval batches)."""
        return [torch.stack(layer) for layer in zip(*per_chunk, strict=True)]

    saved_starts = stacked(starts)
    saved_inputs = stacked([p.inputs for p in passes])
    saved_scaled = stacked(scaled)
    y, query_pre, query_scores = retrieve(
        chunks,
        [s.flatten(0, 1) for s in saved_starts],
        [h.flatten(0, 1) for h in saved_inputs],
        [d.flatten(0, 1) for d in saved_scaled],
        act,
    )
    saved = Saved(passes, clips, saved_starts, saved_inputs, saved_scaled, query_pre, query_scores)
    return y.unflatten(0, chunks.keys.shape[:2]), carry, saved
