"""Held-out bits/base as a function of left context, always on the same bases.

`blocks` blocks of `block` bases are spread evenly over the held-out tokens, each starting at
least max(contexts) bases in (blocks holding N are skipped). For a context L every block is
scored after streaming exactly the L bases before it from a fresh state, so the curve compares
like with like: if it falls, distant bases helped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.longcontext.streams import stream_log2p
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import N_ID


@dataclass(frozen=True)
class CurvePoint:
    """Bits/base of the blocks after `context` bases of left context."""

    context: int
    bits_per_base: float
    bases: int


def block_starts(ids: np.ndarray, lead: int, block: int, count: int) -> list[int]:
    """Up to `count` block starts evenly spread over [lead, len(ids) − block], avoiding N."""
    last = len(ids) - block
    if last < lead:
        raise PipelineError(
            f"held-out sequence of {len(ids):,} bases is too short for {lead:,} bases of context "
            f"plus a block of {block:,}"
        )
    candidates = np.linspace(lead, last, 4 * count).round().astype(int)
    clean = [int(s) for s in candidates if not (ids[s - lead : s + block] == N_ID).any()]
    picked = np.linspace(0, len(clean) - 1, min(count, len(clean))).round().astype(int)
    return [clean[i] for i in sorted(set(picked.tolist()))] if clean else []


def context_curve(
    lm: TitansLM,
    ids: np.ndarray,
    contexts: list[int],
    *,
    block: int,
    blocks: int,
    piece_len: int,
    reset_every: int | None = None,
) -> list[CurvePoint]:
    """Bits/base on the same held-out blocks for every context length."""
    starts = block_starts(ids, max(contexts), block, blocks)
    if not starts:
        raise PipelineError("no held-out block free of N for the longest context")
    points = []
    for context in sorted(contexts):
        rows = np.stack([ids[s - context : s + block] for s in starts]).astype(np.int64)
        scores = stream_log2p(
            lm, rows, piece_len=piece_len, score_from=context, reset_every=reset_every
        )
        known = scores[~np.isnan(scores)]
        points.append(CurvePoint(context, float(-known.mean()), int(known.size)))
    return points
