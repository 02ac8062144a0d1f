"""Planted-repeat recall: a random segment inserted twice into real background sequence.

Each trial takes `lead` + distance + segment bases of N-free background at a random offset and
writes one random segment (uniform A/C/G/T) at `lead` and again `distance` bases later (start to
start). Both copies are scored in one stream; a model that recalls the first copy predicts the
second far better: the ratio of their bits/base is near 0, near 1 when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.longcontext.streams import stream_log2p
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import A_ID, N_ID


@dataclass(frozen=True)
class RecallPoint:
    """Bits/base of the first and second copy at one distance (over all trials)."""

    distance: int
    first: float
    second: float
    trials: int

    @property
    def ratio(self) -> float:
        return self.second / self.first


def planted_rows(
    background: np.ndarray, distance: int, *, segment: int, lead: int, trials: int, seed: int
) -> np.ndarray:
    """[trials, lead + distance + segment] background windows with the segment planted twice."""
    if distance < segment:
        raise ValueError(f"distance {distance} is shorter than the segment ({segment})")
    length = lead + distance + segment
    rng = np.random.default_rng([seed, distance])
    rows = []
    for _ in range(100 * trials):
        offset = int(rng.integers(0, len(background) - length))
        window = background[offset : offset + length].copy()
        if (window == N_ID).any():
            continue
        planted = rng.integers(A_ID, A_ID + 4, segment).astype(window.dtype)
        window[lead : lead + segment] = planted
        window[lead + distance : lead + distance + segment] = planted
        rows.append(window)
        if len(rows) == trials:
            return np.stack(rows)
    raise PipelineError(f"no N-free background window of {length:,} bases found")


def planted_recall(
    lm: TitansLM,
    background: np.ndarray,
    distances: list[int],
    *,
    segment: int,
    lead: int,
    trials: int,
    piece_len: int,
    reset_every: int | None = None,
    seed: int = 0,
) -> list[RecallPoint]:
    """First- and second-copy bits/base at every distance."""
    points = []
    for distance in sorted(distances):
        rows = planted_rows(
            background, distance, segment=segment, lead=lead, trials=trials, seed=seed
        )
        scores = stream_log2p(
            lm, rows, piece_len=piece_len, score_from=lead, reset_every=reset_every
        )
        first = -scores[:, :segment].mean()
        second = -scores[:, distance : distance + segment].mean()
        points.append(RecallPoint(distance, float(first), float(second), trials))
    return points
