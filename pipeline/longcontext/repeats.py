"""The genome's own repeats: bits/base where the preceding k bases occurred before, far back.

Windows of background are streamed whole. A position counts as a distant repeat when the `k`
bases before it also occur earlier in the same window, the nearest such occurrence more than
`beyond` bases back (out of the attention window's reach): a model that recalls what followed
that earlier occurrence predicts the base well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from titans_dna.tokenizer import A_ID, N_ID


@dataclass(frozen=True)
class RepeatPositions:
    """Distant-repeat positions of each window (a boolean mask over positions 1..L−1)."""

    windows: np.ndarray  # [W, L] token ids
    mask: np.ndarray  # [W, L − 1]: position t + 1 is a distant repeat


def repeat_positions(ids: np.ndarray, k: int, beyond: int) -> np.ndarray:
    """Boolean [L − 1]: position t + 1's preceding k-mer last occurred more than `beyond` back."""
    bases = ids.astype(np.int64) - A_ID
    valid = (bases >= 0) & (bases < 4)
    codes = np.zeros(len(ids), np.int64)  # the k-mer ending at each position, 2 bits a base
    for j in range(k):
        codes = (codes << 2) | np.roll(np.where(valid, bases, 0), j)
    whole = np.convolve(valid, np.ones(k, int))[: len(ids)] == k
    whole[: k - 1] = False
    seen: dict[int, int] = {}
    mask = np.zeros(len(ids) - 1, bool)
    for end in np.flatnonzero(whole[:-1]).tolist():
        code = int(codes[end])
        before = seen.get(code)
        if before is not None and end - before > beyond:
            mask[end] = True  # predicts position end + 1
        seen[code] = end
    return mask


def sample_windows(
    background: np.ndarray, length: int, count: int, *, k: int, beyond: int, seed: int
) -> RepeatPositions:
    """`count` N-free windows of `length` bases at random offsets, with their repeat masks."""
    rng = np.random.default_rng(seed)
    windows, masks = [], []
    for _ in range(100 * count):
        offset = int(rng.integers(0, len(background) - length))
        window = background[offset : offset + length]
        if (window == N_ID).mean() > 0.01:
            continue
        windows.append(window)
        masks.append(repeat_positions(window, k, beyond))
        if len(windows) == count:
            return RepeatPositions(np.stack(windows), np.stack(masks))
    raise PipelineError(f"no background window of {length:,} bases with under 1% N found")
