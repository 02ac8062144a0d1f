"""Pooling of per-token hidden states into one vector per sequence, computable online.

Every pooling keeps a small accumulator that `update` folds one piece of a sequence into, so a
sequence streamed through the recurrent state in pieces pools to the same vector as one pass,
with memory independent of its length. Kinds:

- mean: average over real tokens (mask True);
- last: the hidden state of the last real token;
- max: element-wise maximum over real tokens;
- attention: a learned query per head attends over the tokens (online softmax, as in
  flash attention: running maximum, normaliser and weighted sum).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

POOLINGS = ("mean", "last", "max", "attention")


@dataclass
class PoolAccumulator:
    """Running pooling state for a batch [B] of sequences (fields depend on the kind).

    total: [B, D] sum / max / last / attention-weighted sum ([B, H, D/H] for attention);
    count: [B] real tokens seen (mean, last); norm, peak: [B, H] softmax normaliser and running
    maximum score (attention).
    """

    total: Tensor
    count: Tensor
    norm: Tensor | None = None
    peak: Tensor | None = None


class SequencePooling(nn.Module):
    """Pools hidden [B, T, D] over mask [B, T] (True = real token) into [B, D].

    `forward(hidden, mask)` is one pass; `start`, `update` and `finish` pool a sequence fed in
    pieces and give the same result.
    """

    def __init__(self, kind: str, d_model: int, n_heads: int = 1):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.kind, self.d_model, self.n_heads = kind, d_model, n_heads
        if kind == "attention":
            head_dim = d_model // n_heads
            self.key = nn.Linear(d_model, d_model, bias=False)
            self.value = nn.Linear(d_model, d_model, bias=False)
            self.query = nn.Parameter(torch.randn(n_heads, head_dim) / math.sqrt(head_dim))

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        acc = self.start(hidden.shape[0], hidden.device, hidden.dtype)
        self.update(acc, hidden, mask)
        return self.finish(acc)

    def start(self, batch: int, device: torch.device, dtype: torch.dtype) -> PoolAccumulator:
        """An empty accumulator for `batch` sequences."""
        count = torch.zeros(batch, device=device, dtype=torch.long)
        if self.kind == "attention":
            head_dim = self.d_model // self.n_heads
            total = torch.zeros(batch, self.n_heads, head_dim, device=device, dtype=dtype)
            norm = torch.zeros(batch, self.n_heads, device=device, dtype=dtype)
            peak = torch.full((batch, self.n_heads), -math.inf, device=device, dtype=dtype)
            return PoolAccumulator(total, count, norm, peak)
        fill = -math.inf if self.kind == "max" else 0.0
        total = torch.full((batch, self.d_model), fill, device=device, dtype=dtype)
        return PoolAccumulator(total, count)

    def update(self, acc: PoolAccumulator, hidden: Tensor, mask: Tensor) -> None:
        """Fold the next piece: hidden [B, t, D], mask [B, t] (True = real token)."""
        mask = mask.to(torch.bool)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if self.kind == "mean":
            acc.total = acc.total + (hidden * weights).sum(dim=1)
        elif self.kind == "max":
            masked = hidden.masked_fill(~mask.unsqueeze(-1), -math.inf)
            acc.total = torch.maximum(acc.total, masked.amax(dim=1))
        elif self.kind == "last":
            self._update_last(acc, hidden, mask)
        else:
            self._update_attention(acc, hidden, mask)
        acc.count = acc.count + mask.sum(dim=1)

    def finish(self, acc: PoolAccumulator) -> Tensor:
        """The pooled vectors [B, D]; sequences without real tokens pool to zeros."""
        if self.kind == "mean":
            return acc.total / acc.count.clamp(min=1).unsqueeze(-1).to(acc.total.dtype)
        if self.kind == "max":
            return torch.where(acc.count.unsqueeze(-1) > 0, acc.total, torch.zeros_like(acc.total))
        if self.kind == "last":
            return acc.total
        pooled = acc.total / acc.norm.clamp(min=torch.finfo(acc.norm.dtype).tiny).unsqueeze(-1)
        return pooled.reshape(pooled.shape[0], self.d_model)

    def _update_last(self, acc: PoolAccumulator, hidden: Tensor, mask: Tensor) -> None:
        has_real = mask.any(dim=1)
        # Index of the last True in each row (0 when none; those rows are not taken).
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, torch.zeros_like(positions)).amax(dim=1)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        acc.total = torch.where(has_real.unsqueeze(-1), picked, acc.total)

    def _update_attention(self, acc: PoolAccumulator, hidden: Tensor, mask: Tensor) -> None:
        b, t, _ = hidden.shape
        head_dim = self.d_model // self.n_heads
        keys = self.key(hidden).view(b, t, self.n_heads, head_dim)
        values = self.value(hidden).view(b, t, self.n_heads, head_dim)
        scores = torch.einsum("bthd,hd->bth", keys, self.query) / math.sqrt(head_dim)
        scores = scores.masked_fill(~mask.unsqueeze(-1), -math.inf)
        peak = torch.maximum(acc.peak, scores.amax(dim=1))
        # Rows with no real token yet keep peak -inf; shift by 0 there so exp() stays finite.
        shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        rescale = torch.exp(acc.peak - shift)
        weights = torch.exp(scores - shift.unsqueeze(1))
        acc.norm = acc.norm * rescale + weights.sum(dim=1)
        acc.total = acc.total * rescale.unsqueeze(-1) + torch.einsum(
            "bth,bthd->bhd", weights, values
        )
        acc.peak = peak


Piece = tuple[int, Tensor, Tensor]  # (first position, tokens [B, t], mask [B, t])
PieceHook = Callable[[int, Tensor, Tensor], None]  # (first position, hidden [B, t, D], mask)


def pool_pieces(
    model: Callable[..., tuple], pool: SequencePooling, pieces: Iterable[Piece],
    on_piece: PieceHook | None = None,
) -> Tensor:  # fmt: skip
    """Stream consecutive pieces of a batch of sequences through `model` (a TitansLM: called as
    model(tokens, state) -> (logits, hidden, state)), pooling the hidden states online: [B, D],
    equal to one pass. `on_piece` sees every piece's hidden states (float32)."""
    acc, state = None, None
    for start, tokens, mask in pieces:
        _, hidden, state = model(tokens, state)
        hidden = hidden.float()
        if acc is None:
            acc = pool.start(hidden.shape[0], hidden.device, hidden.dtype)
        pool.update(acc, hidden, mask)
        if on_piece is not None:
            on_piece(start, hidden, mask)
    return pool.finish(acc)
