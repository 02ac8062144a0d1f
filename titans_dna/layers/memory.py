"""The neural long-term memory layer (paper section 4.4) around the `neural_memory` op.

x -> q, k, v: linear projection, depthwise causal conv, SiLU; q and k L2-normalised per head.
x -> per-token, per-head gates: θ = θ_max·sigmoid, η = sigmoid, α = sigmoid.
(q, k, v, gates, state) -> neural_memory -> y; out = out_proj(norm(y) ⊙ sigmoid(gate(x))).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from titans_dna.layers.conv import CausalDepthwiseConv1d
from titans_dna.layers.norm import HeadRMSNorm
from titans_dna.ops.memory import MemoryState, neural_memory
from titans_dna.ops.memory.activations import get_activation

# Initial gate values (biases of the gate projection): a learning rate θ = 0.1·θ_max (the
# normalized update damps any larger step; the paper's update is stable per token only below
# 1 / ‖k‖² = 1, and per chunk far lower), momentum η = 0.8, and forgetting α ≈ 0.0025, a memory
# horizon of a few hundred tokens that training adjusts.
_THETA_INIT = 0.1
_ETA_INIT = 0.8
_ALPHA_INIT = 0.0025


@dataclass
class NeuralMemoryState:
    """Streaming state: last K-1 conv inputs of the query [B, H*D, K-1] and key/value
    [B, 2*H*D, K-1] paths, and the memory (weights, momentum)."""

    conv_q: torch.Tensor
    conv_kv: torch.Tensor
    memory: MemoryState


class NeuralMemory(nn.Module):
    """forward(x [B, T, d_model], state | None) -> (out [B, T, d_model], state).

    With state None the memory starts from the learned initial weights (per head, expanded over
    the batch) with zero momentum. `read` queries a memory without updating it (MAC).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        depth: int,
        hidden: int,
        chunk_size: int,
        conv_kernel: int,
        theta_max: float,
        max_surprise_norm: float | None,
        activation: str = "silu",
        residual: bool = False,
        update: str = "normalized",
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.chunk_size = chunk_size
        self.theta_max = theta_max
        self.max_surprise_norm = max_surprise_norm
        self.activation = activation
        self.residual = residual
        self.update = update
        self.impl = impl
        inner = n_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=False)
        self.q_conv = CausalDepthwiseConv1d(inner, conv_kernel)
        self.kv_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.kv_conv = CausalDepthwiseConv1d(2 * inner, conv_kernel)
        self.gates = nn.Linear(d_model, 3 * n_heads)
        self.init_weights = nn.ParameterList(
            nn.Parameter(w) for w in _initial_weights(n_heads, self.head_dim, depth, hidden)
        )
        self.out_norm = HeadRMSNorm(n_heads, self.head_dim)
        self.out_gate = nn.Linear(d_model, inner, bias=False)
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        self._init_gate_biases()

    def _init_gate_biases(self) -> None:
        theta, eta, alpha = self.gates.bias.data.chunk(3)
        theta.fill_(_logit(_THETA_INIT))
        eta.fill_(_logit(_ETA_INIT))
        alpha.fill_(_logit(_ALPHA_INIT))

    def initial_state(
        self, batch: int, device: torch.device, dtype: torch.dtype
    ) -> NeuralMemoryState:
        """State at a sequence start: zero conv history, learned memory weights."""
        inner = self.n_heads * self.head_dim
        history = self.q_conv.kernel_size - 1
        return NeuralMemoryState(
            conv_q=torch.zeros(batch, inner, history, device=device, dtype=dtype),
            conv_kv=torch.zeros(batch, 2 * inner, history, device=device, dtype=dtype),
            memory=MemoryState.initial(list(self.init_weights), batch),
        )

    def forward(
        self, x: torch.Tensor, state: NeuralMemoryState | None = None
    ) -> tuple[torch.Tensor, NeuralMemoryState]:
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        q, conv_q = self._queries(x, state.conv_q)
        kv, conv_kv = self.kv_conv(self.kv_proj(x), state.conv_kv)
        k, v = self._split(F.silu(kv)).chunk(2, dim=-1)
        theta, eta, alpha = torch.sigmoid(self.gates(x).float()).chunk(3, dim=-1)
        y, memory = neural_memory(
            q,
            F.normalize(k, dim=-1),
            v,
            theta * self.theta_max,
            eta,
            alpha,
            state.memory,
            chunk_size=self.chunk_size,
            impl=self.impl,
            max_surprise_norm=self.max_surprise_norm,
            activation=self.activation,
            residual=self.residual,
            update=self.update,
        )
        return self._output(x, y), NeuralMemoryState(conv_q, conv_kv, memory)

    def read(
        self, x: torch.Tensor, memory: MemoryState, conv_q: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieve M(q; W) from the frozen `memory` for queries projected from x [B, T, d_model].

        conv_q is the query conv history of this input stream (None at its start).
        Returns (out [B, T, d_model], new conv history).
        """
        q, conv_q = self._queries(x, conv_q)
        y = apply_memory(memory.weights, q, self.activation, self.residual)
        return self._output(x, y.to(x.dtype)), conv_q

    def _queries(
        self, x: torch.Tensor, conv: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm queries [B, T, H, D] and the new conv history."""
        q, conv = self.q_conv(self.q_proj(x), conv)
        return F.normalize(self._split(F.silu(q)), dim=-1), conv

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, n*H*D] -> [B, T, H, n*D] keeping each head's q/k/v channels together."""
        parts = x.unflatten(-1, (-1, self.n_heads, self.head_dim))  # [B, T, n, H, D]
        return parts.transpose(-3, -2).flatten(-2)

    def _output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gated = self.out_norm(y).flatten(-2) * torch.sigmoid(self.out_gate(x))
        return self.out_proj(gated)


def apply_memory(
    weights: tuple[torch.Tensor, ...], x: torch.Tensor, activation: str, residual: bool
) -> torch.Tensor:
    """M(x; W) = W_L σ(... σ(W_1 x)) (+ x) for a whole sequence, no update.

    weights: [B, H, out_l, in_l] per layer; x: [B, T, H, D]. Returns [B, T, H, D] in the weights'
    dtype (the op keeps its state in float32 or float64).
    """
    act = get_activation(activation).fn
    x = x.to(weights[0].dtype).transpose(1, 2)  # [B, H, T, D]
    h = x
    for layer, w in enumerate(weights):
        h = torch.matmul(h, w.transpose(-1, -2))
        if layer < len(weights) - 1:
            h = act(h)
    if residual:
        h = h + x
    return h.transpose(1, 2)


def _initial_weights(n_heads: int, dim: int, depth: int, hidden: int) -> list[torch.Tensor]:
    """Per-head initial memory weights [H, out, in], std 1/sqrt(in) (variance preserving)."""
    widths = [dim] + [hidden] * (depth - 1) + [dim]
    return [
        torch.randn(n_heads, out, inp) / math.sqrt(inp) for inp, out in itertools.pairwise(widths)
    ]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))
