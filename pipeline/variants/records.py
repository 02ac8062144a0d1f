"""VCF records to score: read (bgzip, plain gzip or plain text), split per ALT, checked against
the genome.

Every record is kept, in input order; each ALT allele is either a scorable `Target` or skipped
with a reason (symbolic, breakend, missing, REF mismatch under `--ref-mismatch skip`). A contig
the genome does not have, or a REF that does not match it (by default), is an error naming the
line.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from pipeline.errors import input_error
from pipeline.io.files import check_readable, is_bgzf, is_gzip, open_text, quiet_htslib
from pipeline.variants.alleles import Allele, normalize, ref_matches, skip_reason


@dataclass
class Record:
    """One VCF record: its line number, where it lies, and per ALT a Target index or a reason."""

    line: int
    chrom: str
    pos: int  # 1-based, as in the file
    ref: str
    alts: list[str]
    targets: list[int | None] = field(default_factory=list)
    skipped: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """One ALT allele to score, left-aligned on its contig."""

    record: int  # index into the records
    chrom: str
    allele: Allele


@contextmanager
def open_vcf(path: Path) -> Iterator[pysam.VariantFile]:
    """pysam's reader; a plain-gzip VCF (not bgzip, which htslib cannot read) is decompressed to
    a temporary file first."""
    check_readable(path)
    if not (is_gzip(path) and not is_bgzf(path)):
        with quiet_htslib():
            try:
                reader = pysam.VariantFile(str(path))
            except (OSError, ValueError) as err:
                raise input_error(path, f"not a readable VCF ({err})") from None
        with reader:
            yield reader
        return
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "input.vcf"
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as err:
            raise input_error(path, f"corrupt gzip data ({err})") from None
        with pysam.VariantFile(str(plain)) as reader:
            yield reader


def read_records(
    path: Path, genome: pysam.FastaFile, *, ref_mismatch: str = "error"
) -> tuple[list[Record], list[Target], pysam.VariantHeader]:
    """Every record of the VCF, the ALT alleles to score, and the header (a copy)."""
    lengths = dict(zip(genome.references, genome.lengths, strict=True))
    records: list[Record] = []
    targets: list[Target] = []
    sequences: dict[str, bytes] = {}
    with open_vcf(path) as reader:
        header = reader.header.copy()
        first_line = _first_record_line(path)
        try:
            for number, rec in enumerate(reader, start=first_line):
                record = Record(number, rec.chrom, rec.pos, rec.ref or "", list(rec.alts or ()))
                if rec.chrom not in lengths:
                    raise input_error(path, f"line {number}: contig {rec.chrom!r} is not in the "
                                      f"genome{_naming_hint(rec.chrom, lengths)}")  # fmt: skip
                if rec.chrom not in sequences:
                    sequences.clear()  # one contig in memory at a time (sorted or not)
                    sequences[rec.chrom] = genome.fetch(rec.chrom).upper().encode()
                _split(path, record, sequences[rec.chrom], len(records), targets, ref_mismatch)
                records.append(record)
        except (OSError, ValueError) as err:
            raise input_error(path, f"malformed VCF near line {len(records) + first_line} "
                              f"({err})") from None  # fmt: skip
    return records, targets, header


def _split(
    path: Path, record: Record, sequence: bytes, index: int, targets: list[Target], mode: str
) -> None:
    if not record.alts:
        record.alts, record.targets, record.skipped = ["."], [None], ["missing_alt"]
        return
    ref_ok = ref_matches(sequence, record.pos - 1, record.ref)
    if not ref_ok and mode == "error":
        found = sequence[record.pos - 1 : record.pos - 1 + len(record.ref)].decode()
        raise input_error(
            path, f"line {record.line}: REF {record.ref} does not match the genome ({found} at "
            f"{record.chrom}:{record.pos}); --ref-mismatch skip scores the rest",
        )  # fmt: skip
    for alt in record.alts:
        reason = skip_reason(alt) or (None if ref_ok else "ref_mismatch")
        if reason is None:
            allele = normalize(sequence, record.pos - 1, record.ref, alt)
            record.targets.append(len(targets))
            targets.append(Target(index, record.chrom, allele))
        else:
            record.targets.append(None)
        record.skipped.append(reason)


def _first_record_line(path: Path) -> int:
    """Line number of the file's first record: the first that is not a header line."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.startswith("#"):
                return number
    return 1


def _naming_hint(chrom: str, lengths: dict[str, int]) -> str:
    other = chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"
    if other in lengths:
        return (f" (the genome calls it {other!r}: rename the VCF's contigs, e.g. "
                "bcftools annotate --rename-chrs)")  # fmt: skip
    return ""
