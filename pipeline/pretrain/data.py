"""Training and validation windows from token stores.

Split: the last `val_fraction` of every contig, and every contig named in `val_contigs`, is
held out; training windows lie wholly inside the rest. A *track* is a stretch windows are drawn
from: one contig's training part, or (with `cross_contig`) a store's training parts joined in file
order with a [SEP] token between them.

Sampling is counter-based: window `i` of optimizer step `s` is drawn by its own generator seeded
with (seed, s, i), so the stream is a pure function of the step. A resumed run continues the same
stream, and rank r of W takes windows [r*B/W, (r+1)*B/W) of the same global batch of B windows
that one process would draw. Store -> track -> start: a store by its weight (or by its number of
window starts), a track by its number of window starts, a start uniformly; then the strand (reverse
complement with probability 1/2); a window with more than `max_n_fraction` N is redrawn.

Streams (`train.stream_windows` K > 1): row i of every step of a stream reads the next window of
one stretch of K * context + 1 tokens, drawn as above by (seed, the stream's first step, i); the
N limit applies to the whole stretch, and interleaved groups of streams differ in their first
step. Consecutive windows overlap by one token (the last input of one window is the first of the
next), so the model state carries across them exactly.

Planted repeats (`data.plant_repeats`): a window may carry one random segment twice, further
apart than attention reaches, drawn by (seed, step, row, PLANT_DRAWS); its first copy is not
scored.

Targets are weighted: A/C/G/T 1, soft-masked A/C/G/T `softmask_weight`, anything else (N, [PAD],
[SEP]) 0, so N and padding are never predicted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import PipelineError, input_error
from pipeline.pretrain.config import DataSection
from pipeline.tokenstore import TokenStore
from titans_dna.tokenizer import A_ID, N_ID, PAD_ID, SEP_ID, T_ID, DNATokenizer

log = logging.getLogger("pipeline")

# Draws per window before giving up on finding one with few enough N.
MAX_DRAWS = 100
# Stretches of open streams kept in memory (all rows of all interleaved groups fit).
OPEN_STREAMS = 4096
# Last key of the generators that plant repeats: their draws never repeat a window's draws.
PLANT_DRAWS = 1


@dataclass(frozen=True)
class Piece:
    """A half-open interval [start, end) of one contig of one store."""

    store: int
    contig: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Track:
    """Pieces read one after another ([SEP] between them) as one sequence."""

    store: int
    pieces: tuple[Piece, ...]

    @property
    def length(self) -> int:
        return sum(p.length for p in self.pieces) + len(self.pieces) - 1


@dataclass(frozen=True)
class Drawn:
    """A training window: where it was drawn (track index, offset, strand) and its tokens."""

    track: int
    offset: int
    reverse: bool
    ids: np.ndarray  # uint8 [length]
    softmask: np.ndarray  # bool [length]


@dataclass
class Batch:
    """inputs, targets: LongTensor [B, T]; weights: FloatTensor [B, T] (0 = not scored)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor


class Corpus:
    """Token stores split into training tracks and held-out pieces."""

    def __init__(self, config: DataSection, *, seed: int):
        self.config, self.seed = config, seed
        self.tokenizer = DNATokenizer()
        self.paths = [Path(p) for p in config.stores]
        self.stores = [_open_store(p) for p in self.paths]
        self.train_pieces, self.val_pieces = self._split()
        self.tracks = self._tracks()
        self._tables: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
        self._streams: dict[tuple[int, int], Drawn] = {}  # (first step, row) -> open stretch

    def close(self) -> None:
        """Close every store."""
        for store in self.stores:
            store.close()

    # ----- split -------------------------------------------------------------------------------

    def _split(self) -> tuple[list[Piece], list[Piece]]:
        held = self._held_out_contigs()
        train, val = [], []
        for s, store in enumerate(self.stores):
            for c, info in enumerate(store.contigs):
                if (s, c) in held:
                    val.append(Piece(s, c, 0, info.length))
                    continue
                n_val = round(info.length * self.config.val_fraction)
                cut = info.length - n_val
                if cut > 0:
                    train.append(Piece(s, c, 0, cut))
                if n_val > 0:
                    val.append(Piece(s, c, cut, info.length))
        if not train:
            raise PipelineError(f"{self._names()}: no training sequence left after the split")
        return train, val

    def _held_out_contigs(self) -> set[tuple[int, int]]:
        names: dict[str, list[tuple[int, int]]] = {}
        for s, store in enumerate(self.stores):
            for c, info in enumerate(store.contigs):
                names.setdefault(info.name, []).append((s, c))
                names.setdefault(f"{info.source}/{info.name}", []).append((s, c))
        held = set()
        for name in self.config.val_contigs:
            if name not in names:
                raise PipelineError(
                    f"data.val_contigs: contig {name!r} is in none of {self._names()}"
                )
            held.update(names[name])
        return held

    def _tracks(self) -> list[Track]:
        if not self.config.cross_contig:
            return [Track(p.store, (p,)) for p in self.train_pieces]
        by_store: dict[int, list[Piece]] = {}
        for piece in self.train_pieces:
            by_store.setdefault(piece.store, []).append(piece)
        return [Track(s, tuple(pieces)) for s, pieces in by_store.items()]

    def _names(self) -> str:
        return ", ".join(str(p) for p in self.paths)

    @property
    def train_bases(self) -> int:
        """Bases in the training part."""
        return sum(p.length for p in self.train_pieces)

    @property
    def val_bases(self) -> int:
        """Bases in the held-out part."""
        return sum(p.length for p in self.val_pieces)

    # ----- reading -----------------------------------------------------------------------------

    def read_track(
        self, track: Track, offset: int, length: int, reverse: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint8 [length], softmask bool [length]) at `offset` of `track`."""
        ids, soft = [], []
        position = 0
        for k, piece in enumerate(track.pieces):
            if k:  # the [SEP] between pieces
                if offset <= position < offset + length:
                    ids.append(np.array([SEP_ID], np.uint8))
                    soft.append(np.zeros(1, bool))
                position += 1
            lo, hi = max(offset, position), min(offset + length, position + piece.length)
            if lo < hi:
                start = piece.start + lo - position
                piece_ids, piece_soft = self.stores[piece.store].window(
                    piece.contig, start, hi - lo
                )
                ids.append(np.asarray(piece_ids, np.uint8))
                soft.append(np.asarray(piece_soft, bool))
            position += piece.length
            if position >= offset + length:
                break
        out_ids, out_soft = np.concatenate(ids), np.concatenate(soft)
        if reverse:
            out_ids = np.asarray(self.tokenizer.reverse_complement(out_ids), np.uint8)
            out_soft = out_soft[::-1].copy()
        return out_ids, out_soft

    def read_piece(self, piece: Piece) -> np.ndarray:
        """Token ids of a whole piece (uint8 [length])."""
        ids, _ = self.stores[piece.store].window(piece.contig, piece.start, piece.length)
        return np.asarray(ids, np.uint8)

    # ----- training sampler --------------------------------------------------------------------

    def check_context(self, context: int, windows: int = 1) -> None:
        """Clear error when no track can hold one stretch of `windows` windows of `context`
        tokens (+1 target)."""
        length = context * windows
        what = f"train.context {context}" if windows == 1 else (
            f"a stream of train.stream_windows {windows} x train.context {context} tokens"
        )  # fmt: skip
        longest = max(t.length for t in self.tracks)
        if longest < length + 1:
            fixes = "a smaller train.context" + (" or train.stream_windows" if windows > 1 else "")
            if not self.config.cross_contig:
                fixes += " or data.cross_contig: true"
            raise PipelineError(
                f"{self._names()}: {what} is longer than every contig's "
                f"training part (longest {longest} bases); use {fixes}"
            )
        short = sum(t.length < length + 1 for t in self.tracks)
        if short:
            log.warning("%d contig(s) shorter than %d + 1 tokens are not sampled", short, length)

    def _table(self, length: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Cumulative store probabilities, and per store cumulative track probabilities."""
        if length in self._tables:
            return self._tables[length]
        starts = np.array([max(t.length - length + 1, 0) for t in self.tracks], np.float64)
        owner = np.array([t.store for t in self.tracks])
        per_store = np.array([starts[owner == s].sum() for s in range(len(self.stores))])
        if self.config.weights is not None:
            weights = np.array(self.config.weights, np.float64) * (per_store > 0)
            if weights.sum() == 0:
                raise PipelineError(
                    f"{self._names()}: every weighted store is shorter than a window"
                )
        else:
            weights = per_store
        store_cdf = _cdf(weights)
        track_cdfs = [_cdf(np.where(owner == s, starts, 0.0)) for s in range(len(self.stores))]
        self._tables[length] = (store_cdf, track_cdfs)
        return self._tables[length]

    def draw_window(self, step: int, index: int, length: int) -> Drawn:
        """Window `index` of the global batch of `step`, `length` tokens long."""
        store_cdf, track_cdfs = self._table(length)
        rng = np.random.default_rng([self.seed, step, index])
        for _ in range(MAX_DRAWS):
            store = _pick(store_cdf, rng.random())
            track = _pick(track_cdfs[store], rng.random())
            offset = int(rng.integers(0, self.tracks[track].length - length + 1))
            reverse = bool(self.config.rc_augment and rng.random() < 0.5)
            ids, soft = self.read_track(self.tracks[track], offset, length, reverse)
            if np.count_nonzero(ids == N_ID) <= self.config.max_n_fraction * length:
                return Drawn(track, offset, reverse, ids, soft)
        raise PipelineError(
            f"{self._names()}: no window of {length} tokens with at most "
            f"{self.config.max_n_fraction:.0%} N found in {MAX_DRAWS} draws (data.max_n_fraction)"
        )

    def train_batch(
        self,
        step: int,
        batch_size: int,
        context: int,
        indices: range,
        stream: tuple[int, int, int] | None = None,
    ) -> Batch:
        """The windows `indices` of step `step`'s global batch of `batch_size` windows.

        stream: (first step, window index, windows per stream) when rows read streams; rows
        are the streams' ids together with `first`."""
        if indices.stop > batch_size:
            raise ValueError(f"window indices {indices} exceed the batch of {batch_size}")
        if stream is None:
            drawn = [self.draw_window(step, i, context + 1) for i in indices]
            windows = [(d.ids, d.softmask) for d in drawn]
        else:
            first, index, count = stream
            lo = index * context
            rows = [self._stretch(first, i, count * context + 1) for i in indices]
            windows = [(d.ids[lo : lo + context + 1], d.softmask[lo : lo + context + 1])
                       for d in rows]  # fmt: skip
        if not self.config.plant_repeats:
            return self.make_batch(windows)
        planted = [self.plant_repeat(step, i, *w) for i, w in zip(indices, windows, strict=True)]
        return self.make_batch([p[:2] for p in planted], unscored=[p[2] for p in planted])

    def plant_repeat(
        self, step: int, row: int, ids: np.ndarray, softmask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, softmask, unscored) of window `row` of step `step`, with probability
        `plant_repeats` carrying one random segment twice; unscored marks the first copy.

        The copies leave the window's first and last tokens alone: a stream's windows share
        them, so the state carried from window to window stays exact."""
        d, unscored = self.config, np.zeros(len(ids), bool)
        rng = np.random.default_rng([self.seed, step, row, PLANT_DRAWS])
        if rng.random() >= d.plant_repeats:
            return ids, softmask, unscored
        low, high = d.repeat_distance
        distance = int(rng.integers(low, high + 1))
        start = int(rng.integers(1, len(ids) - distance - d.repeat_segment))
        segment = rng.integers(A_ID, T_ID + 1, d.repeat_segment).astype(np.uint8)
        ids, softmask = ids.copy(), softmask.copy()
        for at in (start, start + distance):
            ids[at : at + d.repeat_segment], softmask[at : at + d.repeat_segment] = segment, False
        unscored[start : start + d.repeat_segment] = True
        return ids, softmask, unscored

    def _stretch(self, first: int, row: int, length: int) -> Drawn:
        """Row `row`'s stretch of the stream starting at step `first` (kept while it is read:
        the `OPEN_STREAMS` most recently begun)."""
        key = (first, row)
        drawn = self._streams.get(key)
        if drawn is None or len(drawn.ids) != length:
            drawn = self._streams[key] = self.draw_window(first, row, length)
            while len(self._streams) > OPEN_STREAMS:
                del self._streams[min(self._streams)]
        return drawn

    def make_batch(
        self,
        windows: list[tuple[np.ndarray, np.ndarray]],
        unscored: list[np.ndarray] | None = None,
    ) -> Batch:
        """Windows of tokens (+ softmask) -> inputs/targets shifted by one, right-padded;
        `unscored` (bool per token of each window) marks tokens never predicted."""
        width = max(len(ids) for ids, _ in windows) - 1
        ids = np.full((len(windows), width + 1), PAD_ID, np.int64)
        soft = np.zeros((len(windows), width + 1), bool)
        skip = np.zeros((len(windows), width + 1), bool)
        for row, (w_ids, w_soft) in enumerate(windows):
            ids[row, : len(w_ids)], soft[row, : len(w_soft)] = w_ids, w_soft
            if unscored is not None:
                skip[row, : len(w_ids)] = unscored[row]
        targets = ids[:, 1:]
        weights = target_weights(targets, soft[:, 1:], self.config.softmask_weight)
        weights[skip[:, 1:]] = 0.0
        return Batch(
            inputs=torch.from_numpy(ids[:, :-1].copy()),
            targets=torch.from_numpy(targets.copy()),
            weights=torch.from_numpy(weights),
        )

    # ----- validation --------------------------------------------------------------------------

    def val_windows(self, context: int, max_tokens: int | None) -> list[Piece]:
        """Held-out windows of up to `context` + 1 tokens tiling every held-out piece with a
        stride of `context` (each base after a piece's first is scored once), evenly thinned
        to about `max_tokens` scored tokens; empty when nothing is held out."""
        windows = []
        for piece in self.val_pieces:
            for start in range(piece.start, piece.end - 1, context):
                windows.append(
                    Piece(piece.store, piece.contig, start, min(start + context + 1, piece.end))
                )
        scored = sum(w.length - 1 for w in windows)
        if max_tokens is None or scored <= max_tokens or not windows:
            return windows
        keep = max(1, math.floor(len(windows) * max_tokens / scored))
        chosen = np.unique(np.linspace(0, len(windows) - 1, keep).round().astype(int))
        return [windows[i] for i in chosen]

    def val_batches(self, windows: list[Piece], batch_size: int) -> list[Batch]:
        """Batches of held-out windows, similar lengths together (strand +, no augmentation)."""
        ordered = sorted(windows, key=lambda w: -w.length)
        batches = []
        for i in range(0, len(ordered), batch_size):
            group = [self._read_val(w) for w in ordered[i : i + batch_size]]
            batches.append(self.make_batch(group))
        return batches

    def _read_val(self, piece: Piece) -> tuple[np.ndarray, np.ndarray]:
        ids, soft = self.stores[piece.store].window(piece.contig, piece.start, piece.length)
        return np.asarray(ids, np.uint8), np.asarray(soft, bool)


def target_weights(targets: np.ndarray, softmask: np.ndarray, softmask_weight: float) -> np.ndarray:
    """Loss weight per target (float32, same shape): ACGT 1, soft-masked ACGT `softmask_weight`,
    anything else 0."""
    acgt = (targets >= A_ID) & (targets <= T_ID)
    return np.where(acgt, np.where(softmask, softmask_weight, 1.0), 0.0).astype(np.float32)


def _cdf(masses: np.ndarray) -> np.ndarray:
    """Cumulative distribution ending at exactly 1 (all zeros when there is no mass)."""
    total = np.cumsum(masses)
    return total / total[-1] if total[-1] > 0 else total


def _pick(cdf: np.ndarray, u: float) -> int:
    """Index drawn by u in [0, 1): the first entry whose cdf exceeds u (zero-mass entries never)."""
    return int(np.searchsorted(cdf, u, side="right"))


def _open_store(path: Path) -> TokenStore:
    store = TokenStore(path)  # PipelineError naming the file when missing or unreadable
    if not store.contigs:
        store.close()
        raise input_error(path, "token store holds no contigs")
    return store
