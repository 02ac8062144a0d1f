"""Order-k Markov baseline for next-nucleotide prediction, scored in bits per base.

Counts of every (k+1)-mer up to `max_order` + 1 come from the training part; a k-mer that contains
N (or any non-ACGT token) is not counted and breaks the context. Two smoothings:

- `add_one`:  p(w | h) = (c(hw) + 1) / (c(h) + 4), with h the last min(k, available) bases.
- `kneser_ney`: interpolated modified Kneser-Ney (Chen & Goodman 1998): the highest order uses
  raw counts, lower orders continuation counts N1+(. h w), three discounts per order estimated
  from its counts of counts, interpolated down to the uniform distribution.

The best order is the one with the lowest bits per base on the evaluation windows (orders 0..max
are all scored in one pass). A position is scored like the language model scores it: its context
is the preceding bases of the same window, and the first base of a window is not scored.
Tables are dense (4^(k+1) entries per order): order 12 needs about 0.3 GB, independent of the
amount of training sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.batching import reverse_complement
from titans_dna.tokenizer import A_ID, T_ID

ALPHABET = 4
MIN_DISCOUNT = 0.05


@dataclass(frozen=True)
class MarkovResult:
    """Bits per base of every order on the evaluation windows, and the best order."""

    smoothing: str
    bits_per_order: dict[int, float]  # order -> bits per scored base
    best_order: int
    best_bits_per_base: float
    train_bases: int  # counted (k+1)-mer positions at order 0, i.e. ACGT bases counted
    scored_bases: int


def base_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [L] -> (2-bit base codes int64 [L], valid bool [L]); valid = A, C, G or T."""
    ids = np.asarray(ids)
    valid = (ids >= A_ID) & (ids <= T_ID)
    return np.where(valid, ids.astype(np.int64) - A_ID, 0), valid


class MarkovCounts:
    """Dense (k+1)-mer counts for k = 0..max_order from training segments (token-id arrays)."""

    def __init__(self, segments: Iterable[np.ndarray], max_order: int, *, both_strands: bool):
        if not 0 <= max_order <= 12:
            raise ValueError(f"max_order must be in 0..12, got {max_order}")
        self.max_order = max_order
        parts = [np.asarray(s) for s in segments]
        if both_strands:
            parts += [reverse_complement(s) for s in parts]
        self.raw: list[np.ndarray] = []  # raw[j]: [4^j, 4] counts of context h (j bases) then w
        self.cont: list[np.ndarray] = []  # cont[j]: [4^j, 4] distinct left extensions of hw
        self._count(parts)

    def _count(self, parts: list[np.ndarray]) -> None:
        bases = [base_codes(p) for p in parts]
        codes = bases  # codes of (order+1)-mers; element i starts at base i
        for order in range(self.max_order + 1):
            size = ALPHABET ** (order + 1)
            counts = np.zeros(size, dtype=np.int64)
            for code, valid in codes:
                counts += np.bincount(code[valid], minlength=size)
            self.raw.append(counts.astype(np.int32).reshape(-1, ALPHABET))
            if order > 0:
                seen = (
                    counts.reshape(ALPHABET, -1) > 0
                )  # first (leftmost) base is the slowest digit
                self.cont.append(seen.sum(axis=0, dtype=np.int32).reshape(-1, ALPHABET))
            codes = [_extend(c, b, order) for c, b in zip(codes, bases, strict=True)]
        self.train_bases = int(self.raw[0].sum())


def _extend(
    kmers: tuple[np.ndarray, np.ndarray], bases: tuple[np.ndarray, np.ndarray], order: int
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, valid) of (order+2)-mers from those of (order+1)-mers, both starting at base i."""
    code, valid = kmers
    base, base_valid = bases
    return code[:-1] * ALPHABET + base[order + 1 :], valid[:-1] & base_valid[order + 1 :]


def evaluate_markov(
    counts: MarkovCounts, windows: Sequence[np.ndarray], smoothing: str = "kneser_ney"
) -> MarkovResult:
    """Score every ACGT base after the first of each window under orders 0..max_order."""
    if smoothing not in ("kneser_ney", "add_one"):
        raise ValueError(f"unknown smoothing {smoothing!r}")
    targets, avail, contexts = _eval_positions(windows, counts.max_order)
    if len(targets) == 0:
        raise ValueError("no ACGT base to score in the evaluation windows")
    per_order = _order_probabilities(counts, targets, contexts, smoothing)
    bits = {}
    for order in range(counts.max_order + 1):
        rows = np.minimum(avail, order)
        prob = per_order[rows, np.arange(len(targets))]
        bits[order] = float(-np.log2(prob).mean())
    best = min(bits, key=bits.get)
    return MarkovResult(
        smoothing=smoothing,
        bits_per_order=bits,
        best_order=best,
        best_bits_per_base=bits[best],
        train_bases=counts.train_bases,
        scored_bases=len(targets),
    )


def _eval_positions(
    windows: Sequence[np.ndarray], max_order: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Targets (base codes [n]), available context length [n] (<= max_order), and for each
    order j the code of the j bases before each target ([n] each)."""
    if not windows:
        raise ValueError("no evaluation windows")
    sep = np.array([0], dtype=np.uint8)  # PAD: invalid, so no context crosses windows
    flat = np.concatenate([part for w in windows for part in (sep, np.asarray(w, np.uint8))])
    code, valid = base_codes(flat)
    starts = np.zeros(len(flat), dtype=bool)
    starts[np.cumsum([0, *[len(w) + 1 for w in windows[:-1]]]) + 1] = True
    is_target = valid & ~starts
    run = _valid_run_before(valid)
    positions = np.flatnonzero(is_target)
    contexts = [np.zeros(len(positions), dtype=np.int64)]
    rolling = code.copy()  # rolling[i] = code of the j bases ending at i
    for j in range(1, max_order + 1):
        contexts.append(rolling[positions - 1])
        rolling[1:] = rolling[:-1] * ALPHABET + code[1:]
        rolling %= ALPHABET ** (j + 1)
    # rolling was built from invalid positions too; contexts are only used up to `avail`.
    return code[positions], np.minimum(run[positions], max_order), contexts


def _valid_run_before(valid: np.ndarray) -> np.ndarray:
    """run[i] = number of consecutive valid positions immediately before i."""
    index = np.arange(len(valid))
    last_invalid = np.maximum.accumulate(np.where(~valid, index, -1))
    run_incl = index - last_invalid  # valid positions ending at i (0 when i is invalid)
    before = np.zeros(len(valid), dtype=np.int64)
    before[1:] = run_incl[:-1]
    return before


def _order_probabilities(
    counts: MarkovCounts, targets: np.ndarray, contexts: list[np.ndarray], smoothing: str
) -> np.ndarray:
    """[max_order + 1, n] probability of each target under the model of each order."""
    n = len(targets)
    out = np.empty((counts.max_order + 1, n))
    if smoothing == "add_one":
        for j in range(counts.max_order + 1):
            rows = counts.raw[j][contexts[j]]
            out[j] = (rows[np.arange(n), targets] + 1.0) / (rows.sum(axis=1) + ALPHABET)
        return out
    lower = np.full(n, 1.0 / ALPHABET)  # continuation chain, starting from uniform
    top_prev = lower
    for j in range(counts.max_order + 1):
        top = _kneser_ney_step(counts.raw[j], contexts[j], targets, lower, top_prev)
        out[j] = top
        top_prev = top
        if j < counts.max_order:
            lower = _kneser_ney_step(counts.cont[j], contexts[j], targets, lower, lower)
    return out


def _kneser_ney_step(
    table: np.ndarray,
    context: np.ndarray,
    targets: np.ndarray,
    lower: np.ndarray,
    unseen: np.ndarray,
) -> np.ndarray:
    """p(w | h) = (max(c(hw) - D(c), 0) + gamma(h) p_lower(w)) / c(h.), or `unseen` if c(h.) = 0."""
    d = _discounts(table)
    rows = table[context].astype(np.float64)  # [n, 4]
    total = rows.sum(axis=1)
    c = rows[np.arange(len(targets)), targets]
    disc = d[np.minimum(c, 3).astype(np.int64)]
    gamma = (
        d[1] * (rows == 1).sum(axis=1) + d[2] * (rows == 2).sum(axis=1) + d[3] * (rows >= 3).sum(1)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = (np.maximum(c - disc, 0.0) + gamma * lower) / total
    return np.where(total > 0, prob, unseen)


def _discounts(table: np.ndarray) -> np.ndarray:
    """[D0=0, D1, D2, D3+] from the counts of counts n1..n4 (Chen & Goodman 1998), each kept in
    [MIN_DISCOUNT, k]: a zero discount would leave no mass for unseen bases (continuation counts
    of a 4-letter alphabet stop at 4, which can drive the D3+ estimate to 0)."""
    n = np.bincount(np.minimum(table.ravel(), 5), minlength=6)[1:5].astype(np.float64)
    if np.any(n == 0):  # too little data for the estimate: fixed mid-range discounts
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    d = [1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    return np.array([0.0, *np.clip(d, MIN_DISCOUNT, [1.0, 2.0, 3.0])])
