"""Unlabelled sequence inputs for `predict` and `embed`, tokenized, optionally cut into windows.

Accepted: CSV with a `sequence` column (ids as in pipeline.io.tasks), BED intervals with an indexed
genome, and everything `pipeline.io.read_sequences` reads (FASTA/FASTQ, GenBank/EMBL, BAM/CRAM).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError, input_error
from pipeline.io.regions import region_id
from pipeline.io.tasks import CSV_SUFFIXES, read_csv_examples

# A block (the unit of reading, sorting by length and writing) holds at most this many tokens
# or items; a single longer sequence forms a block of its own and streams in pieces.
BLOCK_TOKENS = 1 << 22
BLOCK_ITEMS = 8192


@dataclass(frozen=True)
class SequenceItem:
    """One sequence (or window of one) to process: ids uint8 [L].

    contig/start/end/strand locate a window inside its input record (0-based, half-open).
    """

    id: str
    tokens: np.ndarray
    contig: str
    start: int
    end: int
    strand: str = "+"
    label: str | None = None


def read_items(
    path: str | Path,
    *,
    reference: str | Path | None = None,
    genome: str | Path | None = None,
    invalid: str = "error",
) -> Iterator[SequenceItem]:
    """Tokenized records of `path` in file order; PipelineError on bad input or no records."""
    from titans_dna.tokenizer import DNATokenizer, InvalidSequenceError

    path = Path(path)
    if not path.is_file():
        raise input_error(path, "input file not found")
    tokenizer = DNATokenizer()
    count = 0
    for name, sequence, label in _records(path, reference, genome):
        if not sequence:
            raise input_error(path, f"record {name} has an empty sequence")
        try:
            tokens, _ = tokenizer.encode(sequence, source=str(path), record=name, invalid=invalid)
        except InvalidSequenceError as error:
            raise PipelineError(str(error)) from None
        count += 1
        yield SequenceItem(name, tokens, name, 0, len(tokens), "+", label)
    if count == 0:
        raise input_error(path, "no sequences in the input (empty file?)")


def windows(items: Iterator[SequenceItem], window: int, stride: int) -> Iterator[SequenceItem]:
    """Cut each item into windows of `window` tokens every `stride` tokens.

    Windows start at 0, stride, 2*stride, ... and the last one ends at the record's end (it may
    be shorter); a record no longer than `window` is one window. Ids are `contig:start-end`,
    1-based and inclusive as samtools and IGV read them (`region_id`).
    """
    for item in items:
        length = len(item.tokens)
        for start in range(0, max(length, 1), stride):
            end = min(start + window, length)
            yield SequenceItem(
                region_id(item.contig, start, end), item.tokens[start:end], item.contig, start, end
            )
            if end >= length:
                break


def blocks(items: Iterator[SequenceItem]) -> Iterator[list[SequenceItem]]:
    """Consecutive items in groups of at most BLOCK_TOKENS tokens or BLOCK_ITEMS items."""
    block, tokens = [], 0
    for item in items:
        if block and (tokens + len(item.tokens) > BLOCK_TOKENS or len(block) >= BLOCK_ITEMS):
            yield block
            block, tokens = [], 0
        block.append(item)
        tokens += len(item.tokens)
    if block:
        yield block


def _records(
    path: Path, reference: str | Path | None, genome: str | Path | None
) -> Iterator[tuple[str, bytes, str | None]]:
    if path.name.lower().endswith(CSV_SUFFIXES):
        for example in read_csv_examples(path, require_label=False):
            yield example.id, example.sequence, example.label
        return
    from pipeline.io import INTERVAL_FORMATS, detect_format, read_bed_sequences, read_sequences

    if detect_format(path) in INTERVAL_FORMATS:
        if genome is None:
            raise input_error(path, "BED input needs the genome it indexes (--genome FASTA)")
        records = read_bed_sequences(path, genome)
    else:
        records = read_sequences(path, reference=reference)
    for record in records:
        yield record.name, record.sequence, None
