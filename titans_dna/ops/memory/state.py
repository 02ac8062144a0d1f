"""The neural memory's recurrent state: per-layer weights W and momentum S, per batch and head.

The memory of one head is a function M(x; W) of width D (the head dimension):

- depth 1: linear, M(x) = W x with W [D, D];
- depth L >= 2: an MLP, M(x) = W_L σ(... σ(W_1 x)), W_1 [F, D], W_2..W_{L-1} [F, F], W_L [D, F]
  (F = the hidden width, e.g. expansion * D); optionally with a residual, M(x) + x.

The depth and widths are read from the state (``len(weights)`` and the shapes); the activation σ
and the residual flag are keyword arguments of the ops. A state always carries a batch axis: the
layer holds its initial weights as learned parameters [H, out, in] and builds the op's state with
:meth:`MemoryState.initial`, which expands them over the batch (gradients flow back to them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor


class MemoryState(NamedTuple):
    """Memory weights and momentum; ``weights[l]`` and ``momentum[l]`` are [B, H, out_l, in_l].

    A NamedTuple, so torch's pytree utilities, ``torch.save`` and tuple unpacking all work on it.
    """

    weights: tuple[Tensor, ...]
    momentum: tuple[Tensor, ...]

    @classmethod
    def initial(cls, weights: Sequence[Tensor], batch_size: int) -> MemoryState:
        """State at the start of a sequence: the given weights, zero momentum.

        weights: one tensor [H, out, in] per memory layer (the layer's learned initial weights),
        expanded (not copied) to [batch_size, H, out, in], so autograd reaches the parameters.
        """
        expanded = tuple(w.unsqueeze(0).expand(batch_size, *w.shape) for w in weights)
        return cls(expanded, zeros_like_momentum(expanded))

    @property
    def depth(self) -> int:
        """Number of memory layers (1 = linear memory)."""
        return len(self.weights)

    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights[0].shape[1]

    def detach(self) -> MemoryState:
        """The same values cut from the autograd graph (truncated backpropagation through time)."""
        return MemoryState(
            tuple(w.detach() for w in self.weights), tuple(s.detach() for s in self.momentum)
        )

    def to(self, *args: Any, **kwargs: Any) -> MemoryState:
        """``Tensor.to`` applied to every tensor (device and/or dtype)."""
        return MemoryState(
            tuple(w.to(*args, **kwargs) for w in self.weights),
            tuple(s.to(*args, **kwargs) for s in self.momentum),
        )

    def select(self, index: Tensor | slice | int) -> MemoryState:
        """The state of a subset of the batch (``index`` applied to the batch axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return MemoryState(
            tuple(w[index] for w in self.weights), tuple(s[index] for s in self.momentum)
        )


def zeros_like_momentum(weights: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Zero momentum with the shapes, dtypes and devices of ``weights``."""
    return tuple(torch.zeros_like(w) for w in weights)


def check_state(state: MemoryState, batch: int, heads: int, dim: int) -> None:
    """Raise ValueError unless ``state`` is a memory of width ``dim`` for [batch, heads].

    The layers must chain (in_{l+1} = out_l), start at ``dim`` and end at ``dim``; momentum must
    match the weights' shapes.
    """
    if not isinstance(state, MemoryState):
        raise ValueError(f"state must be a MemoryState, got {type(state).__name__}")
    if len(state.weights) == 0 or len(state.weights) != len(state.momentum):
        raise ValueError(
            f"state needs >= 1 weight and as many momentum tensors, got "
            f"{len(state.weights)} and {len(state.momentum)}"
        )
    width = dim
    for layer, (w, s) in enumerate(zip(state.weights, state.momentum, strict=True)):
        if w.dim() != 4 or tuple(w.shape[:2]) != (batch, heads) or w.shape[3] != width:
            raise ValueError(
                f"state.weights[{layer}] must be [{batch}, {heads}, out, {width}], "
                f"got {list(w.shape)}"
            )
        if s.shape != w.shape:
            raise ValueError(
                f"state.momentum[{layer}] shape {list(s.shape)} != weights {list(w.shape)}"
            )
        width = w.shape[2]
    if width != dim:
        raise ValueError(f"the last memory layer must output {dim} features, got {width}")
