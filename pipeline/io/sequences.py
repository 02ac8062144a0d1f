"""`read_sequences`: every supported input format behind one call, format found from content."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import input_error
from pipeline.io.alignments import read_alignments
from pipeline.io.annotated import read_annotated
from pipeline.io.bed import read_bed_sequences
from pipeline.io.detect import FORMATS, INTERVAL_FORMATS, detect_format
from pipeline.io.fastx import read_fastx
from pipeline.io.files import check_readable
from pipeline.io.indexed import iter_segments, verified_index
from pipeline.io.records import SequenceRecord, checked_records


def read_sequences(
    path: str | Path, *, reference: str | Path | None = None, fmt: str = "auto"
) -> Iterator[SequenceRecord]:
    """Records of `path` in file order, raw bytes with case kept.

    FASTA/FASTQ (plain, gzip, bgzip), GenBank/EMBL, BAM/SAM/CRAM reads, and BED intervals.
    `reference` is the genome FASTA a CRAM decodes against, or that a BED file's intervals are
    cut from.
    Record names are unique within one input. PipelineError naming the file on bad input.
    """
    path = check_readable(path)
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise ValueError(f"fmt must be 'auto' or one of {FORMATS}, got {fmt!r}")
    if fmt in INTERVAL_FORMATS:
        if reference is None:
            raise input_error(path, "BED intervals need the genome FASTA they index (--genome)")
        return read_bed_sequences(path, reference)
    if fmt in ("fasta", "fastq"):
        records = read_fastx(path)
    elif fmt in ("genbank", "embl"):
        records = read_annotated(path, fmt)
    else:
        records = read_alignments(path, fmt, reference)
    what = "reads" if fmt in ("bam", "cram", "sam") else "sequence records"
    return checked_records(records, path, what)


@dataclass(frozen=True)
class SequencePiece:
    """A record, or a segment of one: `data` holds bases offset..offset+len(data) of `length`."""

    name: str
    length: int
    offset: int
    data: bytes


SEGMENT_BASES = 1 << 22  # a multiple of the token store's chunk sizes


def read_sequence_pieces(
    path: str | Path,
    *,
    reference: str | Path | None = None,
    fmt: str = "auto",
    segment: int = SEGMENT_BASES,
) -> Iterator[SequencePiece]:
    """The records of `read_sequences`, with long records of an indexed FASTA in segments.

    A FASTA whose .fai (and .gzi) index matches the file and that holds a record longer than
    `segment` is read `segment` bases at a time through the index: memory stays bounded and the
    records and names are exactly those of the file. Every other input comes one whole record
    per piece.
    """
    path = check_readable(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    entries = verified_index(path) if fmt == "fasta" else None
    if entries is not None and max(entry.length for entry in entries) > segment:
        for index, offset, data in iter_segments(path, entries, segment):
            entry = entries[index]
            yield SequencePiece(entry.name, entry.length, offset, data)
        return
    for record in read_sequences(path, reference=reference, fmt=fmt):
        yield SequencePiece(record.name, len(record.sequence), 0, record.sequence)
