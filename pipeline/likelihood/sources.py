"""What a likelihood track scores: records of a sequence file, or intervals of a genome.

A record is scored over its whole length in its own coordinates (the record name is the track's
chromosome); long records of an indexed FASTA arrive in segments, so memory does not grow with
them. A genome interval (BED, or a region list) is scored in genome coordinates, strand-aware,
after up to `context` bases of the genome read as left context and never written. On the -
strand the interval is reverse-complemented and its left context lies after it on the genome.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError, input_error
from pipeline.io import INTERVAL_FORMATS, detect_format, open_indexed_fasta
from pipeline.io.bed import BedInterval, check_inside, read_intervals, reverse_complement_bytes
from pipeline.io.regions import region_id
from pipeline.io.sequences import SequencePiece, read_sequence_pieces
from titans_dna.tokenizer import DNATokenizer, InvalidSequenceError


@dataclass(frozen=True)
class Target:
    """One record or interval: its tokens arrive in `segments` (consume them before the next
    target), the first `context` of them left context only.

    Scored base i lies at chromosome position start + i on the + strand, end − 1 − i on the −.
    """

    name: str
    chrom: str
    start: int
    end: int
    strand: str
    context: int
    segments: Iterator[np.ndarray]

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Sources:
    """The targets of one input in order, and the lengths of the chromosomes they lie on (for
    records: filled in as they are read)."""

    targets: Iterator[Target]
    lengths: dict[str, int]


def read_targets(
    path: str | Path,
    *,
    genome: str | Path | None = None,
    reference: str | Path | None = None,
    context: int = 0,
    invalid: str = "error",
) -> Sources:
    """Targets of `path`: one per record of a sequence file, or per interval of a BED file or
    region list (which need `genome`). PipelineError naming the file on bad input."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "input file not found")
    if detect_format(path) in INTERVAL_FORMATS:
        if genome is None:
            raise input_error(path, "genome intervals need the genome they index (--genome)")
        return _interval_sources(path, Path(genome), context, invalid)
    if context:
        raise PipelineError("--context applies to BED and region inputs (with --genome)")
    lengths: dict[str, int] = {}
    return Sources(_record_targets(path, reference, invalid, lengths), lengths)


def _encode(path: Path, name: str, data: bytes, invalid: str, start: int = 0) -> np.ndarray:
    try:
        ids, _ = DNATokenizer().encode(
            data, source=str(path), record=name, invalid=invalid, start=start
        )
    except InvalidSequenceError as error:
        raise PipelineError(str(error)) from None
    return ids


def _record_targets(
    path: Path, reference: str | Path | None, invalid: str, lengths: dict[str, int]
) -> Iterator[Target]:
    pieces = _Lookahead(read_sequence_pieces(path, reference=reference))
    while (first := pieces.peek()) is not None:
        if first.length == 0:
            raise input_error(path, f"record {first.name} has an empty sequence")
        lengths[first.name] = first.length
        segments = _segments(pieces, path, invalid)
        yield Target(first.name, first.name, 0, first.length, "+", 0, segments)
        for _ in segments:  # whatever the caller left unread of this record
            pass


def _segments(pieces: _Lookahead, path: Path, invalid: str) -> Iterator[np.ndarray]:
    """Tokens of the record at the front of `pieces`, one piece at a time."""
    piece = pieces.take()
    while True:
        yield _encode(path, piece.name, piece.data, invalid, piece.offset)
        following = pieces.peek()
        if following is None or following.offset == 0:
            return
        piece = pieces.take()


class _Lookahead:
    """An iterator of sequence pieces with one piece of lookahead."""

    def __init__(self, pieces: Iterator[SequencePiece]) -> None:
        self._pieces = pieces
        self._next = next(pieces, None)

    def peek(self) -> SequencePiece | None:
        return self._next

    def take(self) -> SequencePiece:
        piece = self._next
        if piece is None:
            raise StopIteration
        self._next = next(self._pieces, None)
        return piece


def _interval_sources(path: Path, genome: Path, context: int, invalid: str) -> Sources:
    with open_indexed_fasta(genome) as fasta:
        lengths = dict(zip(fasta.references, fasta.lengths, strict=True))
    intervals = sorted(read_intervals(path), key=lambda i: (i.chrom, i.start, i.end))
    if not intervals:
        raise input_error(path, "no intervals in the input")
    for before, interval in zip([None, *intervals], intervals, strict=False):
        check_inside(path, genome, interval, lengths)
        if interval.start == interval.end:
            raise input_error(path, f"line {interval.line}: empty interval")
        if before is not None and before.chrom == interval.chrom and interval.start < before.end:
            raise input_error(
                path, f"lines {before.line} and {interval.line} overlap: a track has one value "
                "per base",
            )  # fmt: skip
    return Sources(_interval_targets(path, genome, intervals, lengths, context, invalid), lengths)


def _interval_targets(
    path: Path,
    genome: Path,
    intervals: list[BedInterval],
    lengths: dict[str, int],
    context: int,
    invalid: str,
) -> Iterator[Target]:
    with open_indexed_fasta(genome) as fasta:
        for interval in intervals:
            chrom, start, end = interval.chrom, interval.start, interval.end
            if interval.strand == "+":
                lo, hi = max(0, start - context), end
                text = fasta.fetch(chrom, lo, hi).encode()
                left = start - lo
            else:
                lo, hi = start, min(lengths[chrom], end + context)
                text = reverse_complement_bytes(fasta.fetch(chrom, lo, hi).encode())
                left = hi - end
            name = region_id(chrom, start, end, interval.strand)
            tokens = _encode(path, name, text, invalid)
            yield Target(name, chrom, start, end, interval.strand, left, iter([tokens]))
