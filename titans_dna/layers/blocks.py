"""Residual blocks of the four Titans variants (paper section 4), all pre-norm.

LMM  x += M(norm x);                                        x += MLP(norm x)
MAC  per segment s: h = M_{s-1}*(q(norm x)); y = Attn([persistent | h | segment]);
     update M with y; x += gate(y, M_s*(y));                x += MLP(norm x)
MAG  x += gate(SWA(norm x), M(norm x));                     x += MLP(norm x)
MAL  x += M(norm x); x += SWA(norm x);                      x += MLP(norm x)
SWA  x += SWA(norm x);                                      x += MLP(norm x)   (no memory)

Every block maps (x [B, T, d_model], state | None) -> (x, state); the state lets a sequence be
processed in pieces with memory that does not grow with its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from titans_dna.layers.attention import SegmentAttention, SlidingWindowAttention, WindowCache
from titans_dna.layers.gate import NormalizedGate
from titans_dna.layers.memory import NeuralMemory, NeuralMemoryState
from titans_dna.layers.mlp import SwiGLU
from titans_dna.layers.norm import rms_norm

if TYPE_CHECKING:  # layers sit below models: no runtime import of the models package
    from titans_dna.models.config import TitansConfig


def _memory(cfg: TitansConfig) -> NeuralMemory:
    return NeuralMemory(
        cfg.d_model,
        cfg.n_heads,
        depth=cfg.memory_depth,
        hidden=cfg.memory_hidden,
        chunk_size=cfg.chunk_size,
        conv_kernel=cfg.conv_kernel,
        theta_max=cfg.theta_max,
        max_surprise_norm=cfg.max_surprise_norm,
        activation=cfg.memory_activation,
        residual=cfg.memory_residual,
        update=cfg.memory_update,
        impl=cfg.memory_impl,
    )


def _fresh(memory: NeuralMemory, state: NeuralMemoryState) -> NeuralMemoryState:
    """``memory``'s initial state for the batch, device and dtype of ``state``."""
    conv = state.conv_q
    return memory.initial_state(conv.shape[0], conv.device, conv.dtype)


def _window_attention(cfg: TitansConfig) -> SlidingWindowAttention:
    return SlidingWindowAttention(
        cfg.d_model, cfg.n_heads, cfg.window, cfg.n_persistent, cfg.rope_base, cfg.dropout
    )


class _FeedForward(nn.Module):
    """The MLP half shared by all blocks: x + MLP(norm x)."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.mlp_norm = rms_norm(cfg.d_model)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_hidden, cfg.dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.mlp_norm(x))


class LMMBlock(_FeedForward):
    """Memory as a layer with no attention. State: NeuralMemoryState."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__(cfg)
        self.memory_norm = rms_norm(cfg.d_model)
        self.memory = _memory(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, state: NeuralMemoryState | None = None
    ) -> tuple[torch.Tensor, NeuralMemoryState]:
        m, state = self.memory(self.memory_norm(x), state)
        return self.feed_forward(x + self.dropout(m)), state

    def reset_memory(self, state: NeuralMemoryState) -> NeuralMemoryState:
        """The memory back at its learned initial state (same batch, device, dtype)."""
        return _fresh(self.memory, state)


@dataclass
class MACState:
    """Query-conv history of the read path (over the block input) and the memory state
    (over the attention output)."""

    read_conv: torch.Tensor
    memory: NeuralMemoryState


class MACBlock(_FeedForward):
    """Memory as context. Segments run in order: each one reads the memory as it stood before
    the segment, so the segments of one sequence cannot run in parallel. State: MACState."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__(cfg)
        self.segment_len = cfg.segment_len
        self.input_norm = rms_norm(cfg.d_model)
        self.context_norm = rms_norm(cfg.d_model)  # h joins the normalised tokens as keys
        self.attention = SegmentAttention(
            cfg.d_model, cfg.n_heads, cfg.n_persistent, cfg.rope_base, cfg.dropout
        )
        self.memory_norm = rms_norm(cfg.d_model)
        self.memory = _memory(cfg)
        self.gate = NormalizedGate(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, state: MACState | None = None
    ) -> tuple[torch.Tensor, MACState]:
        if state is None:
            mem = self.memory.initial_state(x.shape[0], x.device, x.dtype)
            state = MACState(read_conv=mem.conv_q, memory=mem)
        outputs = []
        for segment in self.input_norm(x).split(self.segment_len, dim=1):
            out, state = self._segment(segment, state)
            outputs.append(out)
        x = x + self.dropout(torch.cat(outputs, dim=1))
        return self.feed_forward(x), state

    def _segment(self, segment: torch.Tensor, state: MACState) -> tuple[torch.Tensor, MACState]:
        """One segment [B, S, d_model] (normalised) -> (gated output [B, S, d_model], state)."""
        # h_t = M_{t-1}*(q_t): the memory as it stood before this segment, queried without update
        h, read_conv = self.memory.read(segment, state.memory.memory, state.read_conv)
        y = self.attention(segment, self.context_norm(h))
        # The memory learns from the attention output and is then read at it. Per token, y_t is
        # answered by the memory after the updates up to t only, which keeps the model causal.
        m, mem = self.memory(self.memory_norm(y), state.memory)
        return self.gate(y, m), MACState(read_conv, mem)

    def reset_memory(self, state: MACState) -> MACState:
        """The memory (and its read path's history) back at the learned initial state."""
        mem = _fresh(self.memory, state.memory)
        return MACState(read_conv=mem.conv_q, memory=mem)


@dataclass
class MAGState:
    """Sliding-window attention cache and memory state."""

    attention: WindowCache
    memory: NeuralMemoryState


class MAGBlock(_FeedForward):
    """Memory as gate: sliding-window attention and the memory read the same input in parallel;
    a normalised non-linear gate combines them. State: MAGState."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__(cfg)
        self.input_norm = rms_norm(cfg.d_model)
        self.attention = _window_attention(cfg)
        self.memory = _memory(cfg)
        self.gate = NormalizedGate(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, state: MAGState | None = None
    ) -> tuple[torch.Tensor, MAGState]:
        xn = self.input_norm(x)
        a, cache = self.attention(xn, state.attention if state else None)
        m, mem = self.memory(xn, state.memory if state else None)
        x = x + self.dropout(self.gate(a, m))
        return self.feed_forward(x), MAGState(cache, mem)

    def reset_memory(self, state: MAGState) -> MAGState:
        """The memory back at its learned initial state; the attention cache is kept."""
        return MAGState(state.attention, _fresh(self.memory, state.memory))


@dataclass
class MALState:
    """Memory state and sliding-window attention cache."""

    memory: NeuralMemoryState
    attention: WindowCache


class MALBlock(_FeedForward):
    """Memory as a layer: the memory, then sliding-window attention over its output.
    State: MALState."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__(cfg)
        self.memory_norm = rms_norm(cfg.d_model)
        self.memory = _memory(cfg)
        self.attention_norm = rms_norm(cfg.d_model)
        self.attention = _window_attention(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, state: MALState | None = None
    ) -> tuple[torch.Tensor, MALState]:
        m, mem = self.memory(self.memory_norm(x), state.memory if state else None)
        x = x + self.dropout(m)
        a, cache = self.attention(self.attention_norm(x), state.attention if state else None)
        x = x + self.dropout(a)
        return self.feed_forward(x), MALState(mem, cache)

    def reset_memory(self, state: MALState) -> MALState:
        """The memory back at its learned initial state; the attention cache is kept."""
        return MALState(_fresh(self.memory, state.memory), state.attention)


class SWABlock(_FeedForward):
    """Sliding-window attention without memory: the ablation that shows what the memory adds.
    State: WindowCache."""

    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__(cfg)
        self.attention_norm = rms_norm(cfg.d_model)
        self.attention = _window_attention(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, state: WindowCache | None = None
    ) -> tuple[torch.Tensor, WindowCache]:
        a, cache = self.attention(self.attention_norm(x), state)
        return self.feed_forward(x + self.dropout(a)), cache

    def reset_memory(self, state: WindowCache) -> WindowCache:
        """No memory to reset."""
        return state


BLOCKS: dict[str, type[nn.Module]] = {
    "lmm": LMMBlock,
    "mac": MACBlock,
    "mag": MAGBlock,
    "mal": MALBlock,
    "swa": SWABlock,
}
