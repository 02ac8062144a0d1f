"""Attention with persistent memory tokens: sliding-window causal attention (MAG, MAL) and
segment attention over [persistent | memory read-out | segment] (MAC).

Persistent memory (paper section 3.3) is a set of learned, input-independent tokens prepended to
every attention context; they pass through the key/value projections like tokens and carry no
position: a query scores them with its unrotated vector, so their pull is the same at every
position. Sequence tokens are scored with rotary embeddings (block-local origins, see rotary.py).
Both kinds of scores come out of one SDPA call by joining features: queries [q_rot | q], sequence
keys [k_rot | 0], persistent keys [0 | p_k] (scale 1/sqrt(D)). Masks are explicit booleans, so the
same code runs on CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from titans_dna.layers.rotary import Rotary, apply_rotary


@dataclass
class WindowCache:
    """Streaming state of sliding-window attention: the last <= window keys (before rotation)
    and values, each [B, H, c, D]."""

    keys: torch.Tensor
    values: torch.Tensor


class _PersistentAttention(nn.Module):
    """Projections, persistent tokens and the SDPA call shared by both attention kinds."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_persistent: int,
        rope_base: float,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        # Unit scale: they enter the key/value projections beside RMS-normalised tokens.
        self.persistent = nn.Parameter(torch.randn(n_persistent, d_model))
        self.rotary = Rotary(self.head_dim, rope_base)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, H*D] -> [B, H, T, D]."""
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def _kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def _attend(
        self,
        q: torch.Tensor,
        q_rot: torch.Tensor,
        k_rot: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Attention over [persistent | sequence] keys.

        q, q_rot: [B, H, ..., Tq, D] unrotated and rotated queries; k_rot, v: [B, H, ..., Tk, D];
        mask: [..., Tq, P + Tk] boolean (True = attend). Returns [B, H, ..., Tq, D].
        """
        if self.persistent.shape[0]:
            q_rot, k_rot, v = self._join_persistent(q, q_rot, k_rot, v)
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(
            q_rot, k_rot, v, attn_mask=mask, dropout_p=p, scale=self.head_dim**-0.5
        )

    def _join_persistent(
        self, q: torch.Tensor, q_rot: torch.Tensor, k_rot: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries [q_rot | q], keys [[0 | p_k]; [k_rot | 0]], values [p_v; v]."""
        n_persistent = self.persistent.shape[0]
        pk, pv = self._kv(self.persistent.to(v.dtype)[None])  # [1, H, P, D]
        lead = v.shape[:-2]
        grid = (1, self.n_heads, *([1] * (len(lead) - 2)), n_persistent, self.head_dim)
        pk = pk.reshape(grid).expand(*lead, n_persistent, self.head_dim)
        pv = pv.reshape(grid).expand(*lead, n_persistent, self.head_dim)
        keys = torch.cat(
            [
                torch.cat([torch.zeros_like(pk), pk], -1),
                torch.cat([k_rot, torch.zeros_like(k_rot)], -1),
            ],
            dim=-2,
        )
        return torch.cat([q_rot, q], dim=-1), keys, torch.cat([pv, v], dim=-2)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """[B, H, T, D] -> out_proj([B, T, H*D])."""
        return self.out_proj(y.transpose(1, 2).flatten(2))


class SlidingWindowAttention(_PersistentAttention):
    """Causal attention of each token over itself and the previous window-1 tokens, plus the
    persistent tokens. Computed block by block (query blocks of <= window tokens against a key
    span of window + block tokens), so memory is O(T * window), never O(T^2).

    forward(x [B, T, d_model], cache | None) -> (y [B, T, d_model], cache with the last
    <= window keys/values).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        window: int,
        n_persistent: int,
        rope_base: float,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(d_model, n_heads, n_persistent, rope_base, dropout)
        self.window = window

    def forward(
        self, x: torch.Tensor, cache: WindowCache | None = None
    ) -> tuple[torch.Tensor, WindowCache]:
        length = x.shape[1]
        q = self._heads(self.q_proj(x))
        k, v = self._kv(x)
        if cache is not None:
            k = torch.cat([cache.keys.to(k.dtype), k], dim=2)
            v = torch.cat([cache.values.to(v.dtype), v], dim=2)
        n_cached = k.shape[2] - length
        # Copies, so the state does not pin this piece's whole key tensor in memory.
        new_cache = WindowCache(
            k[:, :, -self.window :].contiguous(), v[:, :, -self.window :].contiguous()
        )
        block = min(self.window, length)
        n_blocks = -(-length // block)
        q_blocks = _pad_time(q, n_blocks * block - length).unflatten(2, (n_blocks, block))
        # Keys left-padded to a full window before the first query, right-padded to whole blocks.
        k_span, v_span = (
            _spans(
                _pad_time(t, n_blocks * block - length, self.window - n_cached), block, self.window
            )
            for t in (k, v)
        )
        q_rot, k_span = self._rotate(q_blocks, k_span, block)
        mask = self._mask(n_blocks, block, n_cached, x.device)
        y = self._attend(q_blocks, q_rot, k_span, v_span, mask)
        return self._merge(y.flatten(2, 3)[:, :, :length]), new_cache

    def _rotate(
        self, q: torch.Tensor, k: torch.Tensor, block: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries at local positions 0..block-1, keys at -window..block-1 (same in every block)."""
        device = q.device
        cos_q, sin_q = self.rotary.angles(torch.arange(block, device=device), q.dtype)
        cos_k, sin_k = self.rotary.angles(torch.arange(-self.window, block, device=device), k.dtype)
        return apply_rotary(q, cos_q, sin_q), apply_rotary(k, cos_k, sin_k)

    def _mask(self, n_blocks: int, block: int, n_cached: int, device: torch.device) -> torch.Tensor:
        """[n_blocks, block, P + window + block]: True where a query may attend."""
        j = torch.arange(block, device=device)[:, None]
        m = torch.arange(self.window + block, device=device)[None, :]
        band = (m > j) & (m <= j + self.window)  # key offset m - window in (j - window, j]
        first = torch.arange(n_blocks, device=device)[:, None] * block + m
        real = first >= self.window - n_cached  # left padding before the sequence start
        keys = band[None] & real[:, None, :]
        persistent = keys.new_ones(n_blocks, block, self.persistent.shape[0])
        return torch.cat([persistent, keys], dim=2)


class SegmentAttention(_PersistentAttention):
    """MAC attention inside one segment: queries are the segment's tokens, keys/values are
    [persistent | h | segment] where h_j is the memory read-out for token j. Token i sees every
    persistent token and h_j, x_j for j <= i (h_j depends on token j, so later ones would leak).

    forward(x [B, S, d_model], h [B, S, d_model]) -> y [B, S, d_model].
    """

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        q = self._heads(self.q_proj(x))
        k, v = self._kv(torch.cat([h, x], dim=1))
        cos, sin = self.rotary.angles(torch.arange(length, device=x.device), q.dtype)
        q_rot = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos.repeat(2, 1), sin.repeat(2, 1))  # h_j and x_j share position j
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        persistent = causal.new_ones(length, self.persistent.shape[0])
        mask = torch.cat([persistent, causal, causal], dim=1)
        return self._merge(self._attend(q, q_rot, k, v, mask))


def _pad_time(x: torch.Tensor, right: int, left: int = 0) -> torch.Tensor:
    """Zero-pad dimension 2 (time) of [B, H, T, D]."""
    return F.pad(x, (0, 0, left, right)) if left or right else x


def _spans(x: torch.Tensor, block: int, window: int) -> torch.Tensor:
    """Overlapping key spans [B, H, n_blocks, window + block, D] with stride `block` from the
    padded keys [B, H, window + n_blocks*block, D]."""
    return x.unfold(2, window + block, block).transpose(-1, -2)
