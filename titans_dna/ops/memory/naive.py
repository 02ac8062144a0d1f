"""The neural memory, token by token: the definition every faster implementation is tested against.

Per batch element and head (DESIGN.md section 2), for t = 1..T:

    u_t = ∇_W ‖M(k_t; W_{t-1}) − v_t‖²      (the surprise, summed over all output features)
    S_t = η_t S_{t-1} − θ_t c_t u_t
    W_t = (1 − α_t) W_{t-1} + S_t
    y_t = M(q_t; W_t)

with c_t = min(1, max_surprise_norm / ‖u_t‖_F) (1 without clipping; the Frobenius norm is taken
over all memory layers together). With ``chunk_size`` b > 1 this evaluates the chunked
semantics instead: every u_t of a chunk (tokens [jb, (j+1)b)) is taken at the chunk's starting
weights W_{jb}, the recurrences being otherwise the same; b = 1 is the plain recurrence above.

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
) -> tuple[tuple[Tensor, ...], Tensor]:
    """Closed-form ∇_W ‖M(k; W) − v‖² for one token per batch and head.

    k, v: [B, H, D]. Returns (u_l [B, H, out_l, in_l] per layer, squared Frobenius norm of u over
    all layers [B, H]). Each u_l = δ_l h_{l-1}ᵀ with δ_L = 2 (M(k) − v) and
    δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ σ'(z_l).
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
    return tuple(reversed(grads)), norm_sq


def surprise_scale(norm_sq: Tensor, max_norm: float | None) -> Tensor | float:
    """c = min(1, max_norm / ‖u‖_F) from ‖u‖_F² (1 when ``max_norm`` is None).

    Written as max_norm * rsqrt(max(‖u‖², max_norm²)) so that ‖u‖ = 0 has a finite gradient.
    """
    if max_norm is None:
        return 1.0
    return max_norm * norm_sq.clamp(min=max_norm * max_norm).rsqrt()


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
) -> tuple[Tensor, MemoryState]:
    """Token-by-token neural memory (chunked semantics for ``chunk_size`` > 1).

    q, k, v: [B, T, H, D]; theta, eta, alpha: [B, T, H]; state: weights/momentum
    [B, H, out, in] per layer; all one floating dtype. Returns (y [B, T, H, D], end state).
    """
    act = get_activation(activation)
    weights, momentum = tuple(state.weights), tuple(state.momentum)
    anchor = weights
    ys = []
    for t in range(q.shape[1]):
        if t % chunk_size == 0:
            anchor = weights
        grads, norm_sq = memory_grads(anchor, k[:, t], v[:, t], act, residual)
        lr = (theta[:, t] * surprise_scale(norm_sq, max_surprise_norm))[..., None, None]
        keep, mom = (1 - alpha[:, t])[..., None, None], eta[:, t][..., None, None]
        momentum = tuple(mom * s - lr * u for s, u in zip(momentum, grads, strict=True))
        weights = tuple(keep * w + s for w, s in zip(weights, momentum, strict=True))
        ys.append(memory_apply(weights, q[:, t], act, residual)[0])
    y = torch.stack(ys, dim=1) if ys else q.new_empty(q.shape)
    return y, MemoryState(weights, momentum)
