"""The neural memory, token by token: the definition every faster implementation is tested against.

Per batch element and head (DESIGN.md section 2), for t = 1..T, the paper's update
(``update="paper"``) is

    u_t = ∇_W ‖M(k_t; W_{t-1}) − v_t‖²      (the surprise, summed over all output features)
    S_t = η_t S_{t-1} − θ_t c_t u_t
    W_t = (1 − α_t) W_{t-1} + S_t
    y_t = M(q_t; W_t)

with c_t = min(1, max_surprise_norm / ‖u_t‖_F) (1 without clipping; the Frobenius norm is taken
over all memory layers together). With ``chunk_size`` b > 1 this evaluates the chunked
semantics instead: every u_t of a chunk (tokens [jb, (j+1)b)) is taken at the chunk's starting
weights W_{jb}, the recurrences being otherwise the same; b = 1 is the plain recurrence above.

The normalized update (``update="normalized"``, the default) damps each chunk's step by the
curvature it has gathered so far. Split the state inside a chunk into its free evolution from
the chunk start (the recurrences with u = 0) and the update (the recurrences from zero, driven by
the surprises), and run the same recurrences on C_l = 2θ_t c_t h_{l,t} h_{l,t}ᵀ, the outer product
of layer l's input at W_{jb} (the keys for the first layer): C^W_{l,t} = Σ_{i≤t} 2θ_i c_i D_{t,i}
h_{l,i} h_{l,i}ᵀ bounds how far the chunk's summed step moves the memory's output at any input.
With λ_t = Σ_l ‖C^W_{l,t}‖_F (an upper bound of the step's largest curvature), the state is

    (W_t, S_t) = free_t + n_t · update_t,      n_t = 1 / (1 + λ_t),

and the chunk's last token's state starts the next chunk. n_t is a scalar bound of the implicit
step (I + C)^{-1}: with one token it is the proximal step of a linear memory, which never
overshoots its target, and however coherent a chunk's keys, its step stays below one along every
direction. For small steps n_t ≈ 1 and the two updates agree.

The surprise gradients are closed-form outer products (backpropagated error ⊗ layer input), not
autograd calls, so autograd can differentiate through the whole recurrence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from titans_dna.ops.memory.activations import Activation, get_activation
from titans_dna.ops.memory.state import MemoryState


def memory_apply(
    weights: tuple[Tensor, ...], x: Tensor, act: Activation, residual: bool
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """M(x; W) for one token per batch and head.

    weights: [B, H, out_l, in_l] per layer; x: [B, H, D].
    Returns (output [B, H, D], pre-activations z_l [B, H, out_l] of the hidden layers,
    layer inputs h_{l-1} [B, H, in_l] of every layer, h_0 = x).
    """
    inputs, pre = [x], []
    h = x
    for layer, w in enumerate(weights):
        z = (w @ h.unsqueeze(-1)).squeeze(-1)
        if layer == len(weights) - 1:
            h = z
        else:
            pre.append(z)
            h = act.fn(z)
            inputs.append(h)
    return (h + x if residual else h), pre, inputs


def memory_grads(
    weights: tuple[Tensor, ...], k: Tensor, v: Tensor, act: Activation, residual: bool
) -> tuple[tuple[Tensor, ...], Tensor, list[Tensor]]:
    """Closed-form ∇_W ‖M(k; W) − v‖² for one token per batch and head.

    k, v: [B, H, D]. Returns (u_l [B, H, out_l, in_l] per layer, squared Frobenius norm of u over
    all layers [B, H], layer inputs h_{l-1} [B, H, in_l]). Each u_l = δ_l h_{l-1}ᵀ with
    δ_L = 2 (M(k) − v) and δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ σ'(z_l).
    """
    out, pre, inputs = memory_apply(weights, k, act, residual)
    delta = 2 * (out - v)
    grads: list[Tensor] = []
    norm_sq = 0
    for layer in range(len(weights) - 1, -1, -1):
        h = inputs[layer]
        grads.append(delta.unsqueeze(-1) * h.unsqueeze(-2))
        # ‖δ hᵀ‖_F² = ‖δ‖² ‖h‖²: no need to touch the outer product
        norm_sq = norm_sq + delta.square().sum(-1) * h.square().sum(-1)
        if layer > 0:
            back = (weights[layer].transpose(-1, -2) @ delta.unsqueeze(-1)).squeeze(-1)
            delta = back * act.grad(pre[layer - 1])
    return tuple(reversed(grads)), norm_sq, inputs


def surprise_scale(norm_sq: Tensor, max_norm: float | None) -> Tensor | float:
    """c = min(1, max_norm / ‖u‖_F) from ‖u‖_F² (1 when ``max_norm`` is None).

    Written as max_norm * rsqrt(max(‖u‖², max_norm²)) so that ‖u‖ = 0 has a finite gradient.
    """
    if max_norm is None:
        return 1.0
    return max_norm * norm_sq.clamp(min=max_norm * max_norm).rsqrt()


UPDATES = ("normalized", "paper")


class _ChunkStep:
    """The state inside one chunk, split into free evolution, update and curvature (per layer).

    Each part follows S ← η S + drive, W ← (1 − α) W + S; the free part starts at the chunk's
    state with no drive, the update at zero driven by −θ c u, the curvature at zero driven by
    2θ c h hᵀ.
    """

    def __init__(self, state: MemoryState) -> None:
        self.anchor = state.weights
        self.free = (state.weights, state.momentum)
        self.update = tuple(tuple(torch.zeros_like(w) for w in state.weights) for _ in range(2))
        self.curvature: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None = None

    @staticmethod
    def _advance(part, drive, keep: Tensor, mom: Tensor):
        weights, momentum = part
        momentum = tuple(mom * s + d for s, d in zip(momentum, drive, strict=True))
        weights = tuple(keep * w + s for w, s in zip(weights, momentum, strict=True))
        return weights, momentum

    def step(self, grads, inputs, lr: Tensor, keep: Tensor, mom: Tensor, normalized: bool):
        """Advance by one token; returns its state (W_t, S_t)."""
        none = tuple(torch.zeros_like(w) for w in self.free[0])
        self.free = self._advance(self.free, none, keep, mom)
        self.update = self._advance(self.update, tuple(-lr * u for u in grads), keep, mom)
        scale = 1.0
        if normalized:
            outer = tuple(2 * lr * h.unsqueeze(-1) * h.unsqueeze(-2) for h in inputs)
            if self.curvature is None:
                zero = tuple(torch.zeros_like(c) for c in outer)
                self.curvature = (zero, zero)
            self.curvature = self._advance(self.curvature, outer, keep, mom)
            spread = sum(c.square().sum((-1, -2)).sqrt() for c in self.curvature[0])
            scale = (1 / (1 + spread))[..., None, None]
        return tuple(
            tuple(f + scale * u for f, u in zip(free, update, strict=True))
            for free, update in zip(self.free, self.update, strict=True)
        )


def naive_memory(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    theta: Tensor,
    eta: Tensor,
    alpha: Tensor,
    state: MemoryState,
    *,
    chunk_size: int = 1,
    activation: str = "silu",
    residual: bool = False,
    max_surprise_norm: float | None = None,
    update: str = "normalized",
) -> tuple[Tensor, MemoryState]:
    """Token-by-token neural memory (chunked semantics for ``chunk_size`` > 1).

    q, k, v: [B, T, H, D]; theta, eta, alpha: [B, T, H]; state: weights/momentum
    [B, H, out, in] per layer; all one floating dtype. update: "normalized" | "paper" (see the
    module docstring). Returns (y [B, T, H, D], end state).
    """
    act = get_activation(activation)
    normalized = update == "normalized"
    ys = []
    for t in range(q.shape[1]):
        if t % chunk_size == 0:
            chunk = _ChunkStep(state)
        grads, norm_sq, inputs = memory_grads(chunk.anchor, k[:, t], v[:, t], act, residual)
        lr = (theta[:, t] * surprise_scale(norm_sq, max_surprise_norm))[..., None, None]
        keep, mom = (1 - alpha[:, t])[..., None, None], eta[:, t][..., None, None]
        state = MemoryState(*chunk.step(grads, inputs, lr, keep, mom, normalized))
        ys.append(memory_apply(state.weights, q[:, t], act, residual)[0])
    y = torch.stack(ys, dim=1) if ys else q.new_empty(q.shape)
    return y, state
