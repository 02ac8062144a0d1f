"""The two strands' log-likelihood ratios of variants (definition: `pipeline.variants`).

Each strand of a contig is a token sequence S (the reverse strand: the reverse complement) and
each variant a job at stream position q, where its window starts: the window of the reference
haplotype, and that of the alternative, follow S[:q] (the left context).

- `stream` (the default): the variants of a contig are visited in order along one streamed pass
  of S; the model state is kept at the streaming-unit boundary B <= q before each variant, and
  from it the two windows (after S[B:q]) are scored in batches. Each base of the contig goes
  through the model once, each variant costs about one short window. The pass starts `context`
  bases before the first variant (the contig start with no limit) and starts again when the
  next variant lies more than `context` past the last one: every variant sees at least
  `context` bases of left context, and more where variants are dense.
- `window`: every variant on its own, from a fresh state `context` bases before it (rounded
  down to the streaming unit): the baseline. For isolated variants the two methods compute the
  same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.batching import pad_batch
from pipeline.device import autocast
from pipeline.progress import Progress
from pipeline.variants.records import Target
from titans_dna.models.lm import TitansLM, TitansState
from titans_dna.tokenizer import A_ID, T_ID, DNATokenizer

_TOKENIZER = DNATokenizer()
METHODS = ("stream", "window")


@dataclass(frozen=True)
class Job:
    """One variant on one strand: its window starts at q of the strand's tokens."""

    target: int
    q: int
    ref: np.ndarray  # the reference window's tokens
    alt: np.ndarray  # the alternative window's tokens


@dataclass(frozen=True)
class Snapshot:
    """The stream's state after S[:boundary], and log-probabilities of the token at boundary."""

    boundary: int
    state: TitansState | None
    last: torch.Tensor | None  # [1, 1, V] (None at the stream's start)


def strand_jobs(
    targets: list[Target], indices: list[int], tokens: np.ndarray, window: int, reverse: bool
) -> list[Job]:
    """The jobs of variants `indices` on one strand; `tokens` is that strand's sequence."""
    length = len(tokens)
    jobs = []
    for index in indices:
        allele = targets[index].allele
        ref_len = len(allele.ref)
        alt = _TOKENIZER.encode(allele.alt, invalid="n")[0]
        if reverse:
            alt = np.asarray(_TOKENIZER.reverse_complement(alt), np.uint8)
            q = length - allele.pos - ref_len
        else:
            q = allele.pos
        after = tokens[q + ref_len : q + ref_len + window]
        ref = tokens[q : q + ref_len + window]
        jobs.append(Job(index, q, ref, np.concatenate([alt, after])))
    return sorted(jobs, key=lambda job: job.q)


class VariantScorer:
    """Scores variants of one contig strand by strand; `context` None = from the contig's ends."""

    def __init__(
        self,
        lm: TitansLM,
        device: torch.device,
        *,
        window: int,
        context: int | None,
        method: str = "stream",
        batch: int = 16,
        piece_len: int = 4096,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == "window" and context is None:
            raise ValueError("the window method needs a bounded context (--context N)")
        self.lm, self.device = lm.eval(), device
        self.window, self.context, self.method, self.batch = window, context, method, batch
        self.unit = lm.config.stream_multiple
        self.piece_len = max(self.unit, piece_len // self.unit * self.unit)
        self.progress: Progress | None = None

    @torch.no_grad()
    def score_contig(
        self, targets: list[Target], indices: list[int], sequence: np.ndarray
    ) -> dict[int, tuple[float, float]]:
        """(LLR_fwd, LLR_rev) of the variants `indices` on the contig with tokens `sequence`."""
        out: dict[int, list[float]] = {i: [math.nan, math.nan] for i in indices}
        for strand, tokens in enumerate((sequence, _reverse(sequence))):
            jobs = strand_jobs(targets, indices, tokens, self.window, reverse=strand == 1)
            for job, llr in self._strand(tokens, jobs):
                out[job.target][strand] = llr
        return {i: (fwd, rev) for i, (fwd, rev) in out.items()}

    def _strand(self, tokens: np.ndarray, jobs: list[Job]) -> Iterator[tuple[Job, float]]:
        pending: list[tuple[Job, Snapshot]] = []
        for job, snapshot in self._snapshots(tokens, jobs):
            pending.append((job, snapshot))
            if len(pending) >= self.batch:
                yield from self._score(tokens, pending)
                pending = []
        yield from self._score(tokens, pending)

    def _snapshots(self, tokens: np.ndarray, jobs: list[Job]) -> Iterator[tuple[Job, Snapshot]]:
        """Each job with the stream's state at the boundary before its window."""
        current: Snapshot | None = None
        for job in jobs:
            boundary = job.q // self.unit * self.unit
            start = 0
            if self.context is not None:
                start = max(0, (job.q - self.context) // self.unit * self.unit)
            fresh = (
                current is None
                or self.method == "window"
                or (self.context is not None and current.boundary < start)
            )
            if fresh:
                current = Snapshot(start, None, None)
            current = self._advance(tokens, current, boundary)
            yield job, current

    def _advance(self, tokens: np.ndarray, snapshot: Snapshot, boundary: int) -> Snapshot:
        """The snapshot streamed on to `boundary` (a multiple of the unit, >= its own)."""
        position, state, last = snapshot.boundary, snapshot.state, snapshot.last
        while position < boundary:
            stop = min(position + self.piece_len, boundary)
            piece = torch.from_numpy(tokens[position:stop].astype(np.int64))[None]
            logits, _, state = self._forward(piece, state)
            last = F.log_softmax(logits[:, -1:].float(), -1)
            if self.progress is not None:
                self.progress.update(stop - position)
            position = stop
        return Snapshot(position, state, last)

    def _forward(self, tokens: torch.Tensor, state: TitansState | None):
        with autocast(self.device):
            return self.lm(tokens.to(self.device), state)

    def _score(
        self, tokens: np.ndarray, pending: list[tuple[Job, Snapshot]]
    ) -> Iterator[tuple[Job, float]]:
        """Both windows of each pending job, batched by the shape of their states."""
        groups: dict[tuple, list[tuple[Job, Snapshot]]] = {}
        for job, snapshot in pending:
            key = () if snapshot.state is None else snapshot.state.signature()
            groups.setdefault(key, []).append((job, snapshot))
        for group in groups.values():
            yield from self._score_group(tokens, group)

    def _score_group(
        self, tokens: np.ndarray, group: list[tuple[Job, Snapshot]]
    ) -> Iterator[tuple[Job, float]]:
        rows, offsets = [], []
        for job, snapshot in group:
            prefix = tokens[snapshot.boundary : job.q]
            rows += [np.concatenate([prefix, job.ref]), np.concatenate([prefix, job.alt])]
            offsets.append(len(prefix))
        states = [snapshot.state for _, snapshot in group]
        state = None if states[0] is None else TitansState.cat([s for s in states for _ in (0, 1)])
        batch, _ = pad_batch(rows)
        logits, _, _ = self._forward(batch, state)
        logp = F.log_softmax(logits.float(), -1)
        for k, (job, snapshot) in enumerate(group):
            sums = []
            for row in (2 * k, 2 * k + 1):
                targets = torch.from_numpy(rows[row].astype(np.int64)).to(logp.device)
                sums.append(_window_sum(logp[row, : len(rows[row])], snapshot.last, targets,
                                        offsets[k]))  # fmt: skip
            yield job, sums[1] - sums[0]


def _window_sum(
    logp: torch.Tensor, last: torch.Tensor | None, targets: torch.Tensor, offset: int
) -> float:
    """Σ log p(targets[t]) for t >= offset: predicted by logp[t − 1], or `last` for t = 0."""
    lead = logp.new_full((1, logp.shape[-1]), math.nan) if last is None else last[0].to(logp)
    predictions = torch.cat([lead, logp[:-1]], 0)[offset:]
    picked = predictions.gather(-1, targets[offset:, None])[:, 0].double()
    scored = (targets[offset:] >= A_ID) & (targets[offset:] <= T_ID) & picked.isfinite()
    return float(picked[scored].sum())


def _reverse(tokens: np.ndarray) -> np.ndarray:
    return np.asarray(_TOKENIZER.reverse_complement(tokens), np.uint8)
