"""Forward pass of the chunked neural memory: the state recurrence over chunks, then retrieval.

Shapes: N = B*H matrices per chunk, b tokens per chunk, a layer maps in -> out features; a
memory layer's state is carried as (W | S) [N, out, 2, in] (W and S interleaved along the
second-to-last axis, so [W | S] is one [out, 2 in] matrix and its rows, flattened, one
[2 out, in] matrix of (W_o, S_o) row pairs). The math is in ``chunk.py``'s docstring.

Every product with a state is one matrix product of a layer's inputs or errors, weighted per
token by two gate coefficients (β_t, γ_t in retrieval, D_{r,i}, P_{r,i} in the end state). The
first layer weights its inputs (its input, the head dimension, is the narrower side; the
weighted keys and queries are computed before the recurrence); later layers weight their
outputs (2 × out values per token against 2 × in, a quarter of the work for a memory of hidden
width 4 D). Errors are subtracted inside the products (``negated_product``, ``torch.baddbmm``
with alpha −1), never negated in a pass of their own.

The backward pass gets the chunk-start states, the key pass's layer inputs and
pre-activations and the output error, stacked over chunks; it recomputes the rest of the key
pass (slopes and backpropagated errors: one batched product per hidden layer), which halves
what training keeps per token.
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


class Damping(NamedTuple):
    """The normalized update's factor n_t = 1 / (1 + λ_t) of every chunk row, [nc, N, b, 1], and
    the per-layer curvature norms ‖C_{l,t}‖_F [nc, N, b] that λ_t sums."""

    factor: Tensor
    norms: list[Tensor]


class Saved(NamedTuple):
    """What the backward pass needs, stacked over chunks: [nc, N, ...] (per layer where a list)."""

    starts: list[Tensor]  # chunk-start states (W_0 | S_0) [nc, N, out, 2, in]
    inputs: list[Tensor]  # key-side layer inputs h_l [nc, N, b, in] (h_0: the keys)
    pre: list[Tensor]  # key-side pre-activations z_l of the hidden layers [nc, N, b, out]
    out_delta: Tensor  # δ_{L-1} = M(k; W_0) − v [nc, N, b, D]
    clip: Clip  # [nc, N, b, 1] each
    query_pre: list[Tensor]  # retrieval pre-activations Z_l of the hidden layers [nc*N, b, *]
    query_scores: list[Tensor]  # retrieval X_l H_lᵀ of the layers after the first [nc*N, b, b]
    query_projected: list[Tensor]  # their (X_l W_0ᵀ, X_l S_0ᵀ) pairs [nc*N, b, 2 out]
    damping: Damping | None  # the normalized update's step factors (None for the paper's)


class _Stacks:
    """Per-chunk tensors written into [nc, ...] buffers that the first chunk allocates."""

    def __init__(self, n_chunks: int) -> None:
        self.n_chunks = n_chunks
        self.buffers: dict[str, list[Tensor]] = {}

    def put(self, name: str, c: int, tensors: list[Tensor]) -> None:
        if name not in self.buffers:
            self.buffers[name] = [x.new_empty((self.n_chunks, *x.shape)) for x in tensors]
        for buffer, x in zip(self.buffers[name], tensors, strict=True):
            buffer[c] = x


def weigh(x: Tensor, weights: Tensor) -> Tensor:
    """[a x | c x] [..., 2 f] from x [..., f] and weights (a, c) [..., 2, 1]."""
    return (x.unsqueeze(-2) * weights).flatten(-2)


def weigh_pairs(x: Tensor, weights: Tensor) -> Tensor:
    """(a x_o, c x_o) pairs [..., 2 f] (interleaved, as a state's row pairs) from x [..., f] and
    weights (a, c) [..., 2, 1]."""
    return (x.unsqueeze(-1) * weights.mT).flatten(-2)


def combine(pairs: Tensor, weights: Tensor) -> Tensor:
    """a p_o + c q_o [..., f] from (p_o, q_o) pairs [..., 2 f] and weights (a, c) [..., 2, 1]."""
    split = pairs.unflatten(-1, (-1, 2))
    return torch.addcmul(split[..., 0] * weights[..., 0, :], split[..., 1], weights[..., 1, :])


def pair_sums(x: Tensor, pairs: Tensor) -> Tensor:
    """(Σ_o x_o p_o, Σ_o x_o q_o) [..., 2, 1] from x [..., f] and (p_o, q_o) pairs [..., 2 f]:
    the weights' gradient in ``combine`` and ``weigh_pairs``."""
    return (x.unsqueeze(-1) * pairs.unflatten(-1, (-1, 2))).sum(-2).unsqueeze(-1)


def negated_product(a: Tensor, b: Tensor) -> Tensor:
    """−a b of batched matrices [M, n, k] @ [M, k, m], the sign taken inside the product."""
    zero = a.new_zeros(()).expand(a.shape[0], a.shape[1], b.shape[2])
    return torch.baddbmm(zero, a, b, beta=0, alpha=-1)


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
    backs, deltas = backpropagate(z - values, weights, slopes)
    return KeyPass(inputs, pre, slopes, backs, deltas)


def backpropagate(
    out_delta: Tensor, weights: list[Tensor], slopes: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """Errors of every layer from the output's, δ_l = (δ_{l+1} W_{l+1}) ⊙ σ'(z_l).

    Returns (e_l = δ_{l+1} W_{l+1} of the hidden layers, δ_l of every layer), first layer first.
    """
    deltas, backs = [out_delta], []
    for layer in range(len(weights) - 1, 0, -1):
        backs.append(deltas[-1] @ weights[layer])
        deltas.append(backs[-1] * slopes[layer - 1])
    return backs[::-1], deltas[::-1]


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


def curvature_damping(
    inputs: list[Tensor], scale: Tensor, decay: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """The normalized update's factor n_t = 1 / (1 + Σ_l ‖C_{l,t}‖_F) [N, b, 1] of one chunk.

    C_{l,t} = Σ_{i≤t} s_i D_{t,i} h_{l,i} h_{l,i}ᵀ, so ‖C_{l,t}‖_F² = Σ_{i,j} w_{t,i} w_{t,j}
    (h_{l,i}·h_{l,j})² with w = D diag(s): a quadratic form in the squared Gram of the layer's
    inputs, never the [in, in] matrices themselves. inputs h_l [N, b, in] (the keys first),
    scale s [N, b, 1], decay D [N, b, b]. Also returns the norms ‖C_{l,t}‖_F [N, b].
    """
    weighted = decay * scale.mT
    norms = []
    for h in inputs:
        gram = h @ h.mT
        norms.append(((weighted @ gram.square()) * weighted).sum(-1).sqrt())
    return (1 / (1 + sum(norms))).unsqueeze(-1), norms


def end_state(
    ws: Tensor, errors: Tensor, inputs: Tensor, end_keep: Tensor, end_gamma: Tensor, first: bool
) -> Tensor:
    """(W_b | S_b) = (β_r W_0 + γ_r S_0 | ρ S_0) − Σ_i (D_{r,i}, P_{r,i}) Δ_i h_iᵀ.

    ws [N, out, 2, in]. The first layer: errors Δ [N, b, out], inputs [D_{r,:} h | P_{r,:} h]
    [N, b, 2 in]; later layers: errors (D_{r,:} Δ, P_{r,:} Δ) pairs [N, b, 2 out], inputs h.
    """
    decayed = ws * end_keep
    decayed[:, :, 0].addcmul_(ws[:, :, 1], end_gamma)
    rows = decayed.flatten(-2) if first else decayed.flatten(1, 2)
    return torch.baddbmm(rows, errors.mT, inputs, alpha=-1).view_as(ws)


def end_row(chunk: int, n_chunks: int, size: int, tail: int) -> int:
    """Index of a chunk's last real row: ``tail`` in the last chunk, else size − 1."""
    return tail if chunk == n_chunks - 1 else size - 1


def recurrence(
    carry: list[Tensor],
    chunks: ChunkInputs,
    act: Activation,
    max_norm: float | None,
    tail: int | None,
    for_backward: bool = True,
) -> tuple[list[Tensor], dict[str, list[Tensor]]]:
    """Run the state over all chunks; ``tail`` is the last chunk's last real row for the
    normalized update, None for the paper's.

    Returns the end carry and, stacked over chunks: "starts" (per layer), "inputs" (hidden
    layers), "scaled" (Δ_l = s δ_l per layer) and, normalized, "damping" (n_t, then, for the
    backward pass, the norms ‖C_{l,t}‖_F); for the backward pass only (``for_backward``), also
    "pre" (hidden layers), "out_delta" and "clip" (s, and with clipping c and ‖u‖²).
    """
    n_chunks, size = chunks.keys.shape[0], chunks.keys.shape[2]
    stacks = _Stacks(n_chunks)
    for c in range(n_chunks):
        stacks.put("starts", c, carry)
        passed = key_pass([ws[:, :, 0] for ws in carry], chunks.keys[c], chunks.values[c], act)
        clipped = clip(passed, chunks.scale[c], chunks.key_norm_sq[c], max_norm)
        scaled = [delta * clipped.scale for delta in passed.deltas]
        applied = scaled
        if tail is not None:
            factor, norms = curvature_damping(passed.inputs, clipped.scale, chunks.decay[c])
            row = end_row(c, n_chunks, size, tail)
            applied = [delta * factor[:, row : row + 1] for delta in scaled]
            stacks.put("damping", c, [factor, *norms] if for_backward else [factor])
        errors = [applied[0]] + [weigh_pairs(d, chunks.end_weights[c]) for d in applied[1:]]
        inputs = [chunks.key_update[c], *passed.inputs[1:]]
        carry = [
            end_state(ws, e, h, chunks.end_keep[c], chunks.end_gamma[c], first=layer == 0)
            for layer, (ws, e, h) in enumerate(zip(carry, errors, inputs, strict=True))
        ]
        stacks.put("inputs", c, passed.inputs[1:])
        stacks.put("scaled", c, scaled)
        if for_backward:
            stacks.put("pre", c, passed.pre)
            stacks.put("out_delta", c, passed.deltas[-1:])
            stacks.put("clip", c, [x for x in clipped if x is not None])
    return carry, stacks.buffers


def retrieve(
    chunks: ChunkInputs,
    starts: list[Tensor],
    inputs: list[Tensor],
    deltas: list[Tensor],
    act: Activation,
    damping: Tensor | None,
) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """Outputs of all chunks at once; M = nc*N rows of matrices.

    starts (W_0 | S_0) [M, out, 2, in], inputs h_l [M, b, in], scaled errors Δ_l [M, b, out] per
    layer, damping n_t [M, b, 1] (None: 1), which scales row t of every layer's scores.
    Returns (y [M, b, D], and of the layers >= 1: the pre-activations Z_{l-1} of their inputs, raw
    scores X_l H_lᵀ and (X_l W_0ᵀ, X_l S_0ᵀ) pairs).
    """
    flat = ChunkInputs(*(x.flatten(0, 1) for x in chunks))
    decay = flat.decay if damping is None else flat.decay * damping
    first_scores = flat.first_scores if damping is None else flat.first_scores * damping
    # [β q | γ q] [W_0 | S_0]ᵀ − scores Δ
    first = flat.first_inputs @ starts[0].flatten(-2).mT
    z = torch.baddbmm(first, first_scores, deltas[0], alpha=-1)
    pre, raw_scores, projected = [], [], []
    for layer in range(1, len(starts)):
        pre.append(z)
        x = act.fn(z)
        raw_scores.append(x @ inputs[layer].mT)
        projected.append(x @ starts[layer].flatten(1, 2).mT)
        z = torch.baddbmm(
            combine(projected[-1], flat.retrieval), raw_scores[-1] * decay, deltas[layer], alpha=-1
        )
    return z, pre, raw_scores, projected


def forward(
    carry: list[Tensor],
    chunks: ChunkInputs,
    act: Activation,
    max_norm: float | None,
    tail: int | None,
    for_backward: bool = True,
) -> tuple[Tensor, list[Tensor], Saved | None]:
    """The whole forward pass: (y [nc, N, b, D], end carry, what the backward pass needs, or
    None without ``for_backward``: inference keeps only what retrieval reads).

    tail: the last chunk's last real row for the normalized update, None for the paper's.
    """
    carry, stacked = recurrence(carry, chunks, act, max_norm, tail, for_backward)
    starts, inputs = stacked["starts"], [chunks.keys, *stacked["inputs"]]
    damping = None
    if tail is not None:
        factor, *norms = stacked["damping"]
        damping = Damping(factor, norms)
    y, query_pre, query_scores, query_projected = retrieve(
        chunks,
        [s.flatten(0, 1) for s in starts],
        [h.flatten(0, 1) for h in inputs],
        [d.flatten(0, 1) for d in stacked["scaled"]],
        act,
        None if damping is None else damping.factor.flatten(0, 1),
    )
    y = y.unflatten(0, chunks.keys.shape[:2])
    if not for_backward:
        return y, carry, None
    clipped = stacked["clip"]
    clipped = Clip(*clipped) if max_norm is not None else Clip(clipped[0], None, None)
    saved = Saved(
        starts,
        inputs,
        stacked["pre"],
        stacked["out_delta"][0],
        clipped,
        query_pre,
        query_scores,
        query_projected,
        damping,
    )
    return y, carry, saved
