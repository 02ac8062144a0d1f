"""BED intervals (and region lists) cut from an indexed genome, strand-aware.

BED coordinates are 0-based and half-open. Column 6, when present, is the strand: `-` gives
the reverse complement of the interval (IUPAC codes complemented, case kept). Each record is
named `chrom:start-end(strand)`, 1-based and inclusive as samtools and IGV read it. Header
lines (`#`, `track`, `browser`) and blank lines are skipped; every other line must be a valid
interval inside its contig.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import input_error
from pipeline.io.fastx import open_indexed_fasta
from pipeline.io.files import check_readable, open_text
from pipeline.io.records import SequenceRecord, checked_records

_COMPLEMENT = bytes.maketrans(b"ACGTRYSWKMBDHVNacgtryswkmbdhvn", b"TGCAYRSWMKVHDBNtgcayrswmkvhdbn")
_HEADER_PREFIXES = ("#", "track", "browser")


@dataclass(frozen=True)
class BedInterval:
    """One BED line: contig, 0-based half-open [start, end), strand, and its line number."""

    chrom: str
    start: int
    end: int
    strand: str
    line: int


def read_bed_intervals(bed: str | Path) -> Iterator[BedInterval]:
    """Intervals of a BED file (plain or gzip) in file order."""
    bed = check_readable(bed)
    with open_text(bed) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip() and not line.startswith(_HEADER_PREFIXES):
                yield _parse_line(bed, number, line)


def _parse_line(bed: Path, number: int, line: str) -> BedInterval:
    fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
    if len(fields) < 3:
        raise input_error(bed, f"line {number}: expected at least 3 columns: chrom start end")
    chrom, start_text, end_text = (field.strip() for field in fields[:3])
    if not (start_text.lstrip("-").isdigit() and end_text.lstrip("-").isdigit()):
        raise input_error(bed, f"line {number}: start and end must be integers")
    if start_text.startswith("-") or end_text.startswith("-"):
        raise input_error(bed, f"line {number}: negative coordinate ({start_text}, {end_text})")
    start, end = int(start_text), int(end_text)
    if start > end:
        raise input_error(bed, f"line {number}: start {start} is after end {end}")
    strand = fields[5].strip() if len(fields) >= 6 else "."
    if strand not in ("+", "-", "."):
        raise input_error(bed, f"line {number}: strand must be +, - or ., got {strand!r}")
    return BedInterval(chrom, start, end, "-" if strand == "-" else "+", number)


def reverse_complement_bytes(sequence: bytes) -> bytes:
    """Reverse complement of nucleotide text; IUPAC codes complemented, case kept."""
    return sequence.translate(_COMPLEMENT)[::-1]


def read_intervals(path: str | Path) -> Iterator[BedInterval]:
    """Intervals of a BED file or a region list (`chrom:start-end` lines), by content."""
    from pipeline.io.detect import detect_format
    from pipeline.io.regions import read_region_intervals

    if detect_format(path) == "regions":
        return read_region_intervals(path)
    return read_bed_intervals(path)


def read_bed_sequences(bed: str | Path, genome: str | Path) -> Iterator[SequenceRecord]:
    """Sequences of the intervals of a BED file or region list, cut from `genome` (FASTA,
    indexed or indexable)."""
    bed = check_readable(bed)
    return checked_records(_cut(bed, Path(genome)), bed, "intervals")


def check_inside(bed: Path, genome: Path, interval: BedInterval, lengths: dict[str, int]) -> None:
    """PipelineError naming the line unless `interval` lies inside a contig of `genome`."""
    where = f"line {interval.line}: {interval.chrom}:{interval.start}-{interval.end}"
    if interval.chrom not in lengths:
        raise input_error(bed, f"{where}: contig {interval.chrom!r} is not in {genome}")
    if interval.end > lengths[interval.chrom]:
        raise input_error(
            bed,
            f"{where} ends past the end of {interval.chrom} "
            f"({lengths[interval.chrom]} bp in {genome})",
        )


def _cut(bed: Path, genome: Path) -> Iterator[SequenceRecord]:
    from pipeline.io.regions import region_id

    with open_indexed_fasta(genome) as fasta:
        lengths = dict(zip(fasta.references, fasta.lengths, strict=True))
        for interval in read_intervals(bed):
            check_inside(bed, genome, interval, lengths)
            sequence = fasta.fetch(interval.chrom, interval.start, interval.end).encode("utf-8")
            if interval.strand == "-":
                sequence = reverse_complement_bytes(sequence)
            name = region_id(interval.chrom, interval.start, interval.end, interval.strand)
            yield SequenceRecord(name, sequence)
