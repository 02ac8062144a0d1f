"""Reads from BAM, CRAM and SAM files: each read's sequence as sequenced, named by the read.

Secondary and supplementary alignments repeat a primary read and are skipped; reads of a pair
are named `NAME/1` and `NAME/2`. Reads mapped to the reverse strand are reverse-complemented
back to the orientation of the sequencer. A CRAM decodes against its reference genome, which
must hold every contig of the CRAM header (otherwise htslib would try to download it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pysam

from pipeline.errors import input_error
from pipeline.io.fastx import open_indexed_fasta
from pipeline.io.files import one_line, quiet_htslib, read_failure
from pipeline.io.records import SequenceRecord

log = logging.getLogger("pipeline")


def read_alignments(
    path: Path, fmt: str, reference: str | Path | None = None
) -> Iterator[SequenceRecord]:
    """Primary reads of a BAM/CRAM/SAM file in file order."""
    if fmt == "cram":
        if reference is None:
            raise input_error(path, "a CRAM decodes only against its reference (--reference)")
        reference = Path(reference)
    name, without_sequence = None, 0
    with quiet_htslib():
        alignments = _open(path, fmt, reference)
        try:
            with alignments:
                if reference is not None and fmt == "cram":
                    _check_reference(path, alignments, reference)
                for read in alignments.fetch(until_eof=True):
                    if read.is_secondary or read.is_supplementary:
                        continue
                    name = _read_name(read)
                    sequence = read.get_forward_sequence()
                    if sequence is None:
                        without_sequence += 1
                        continue
                    yield SequenceRecord(name, sequence.encode("utf-8"))
        except (OSError, ValueError) as error:
            where = "at the first read" if name is None else f"after read {name!r}"
            raise read_failure(path, error, where) from None
    if without_sequence:
        log.warning("%s: skipped %d reads stored without a sequence", path, without_sequence)


def _open(path: Path, fmt: str, reference: Path | None) -> pysam.AlignmentFile:
    mode = {"bam": "rb", "cram": "rc", "sam": "r"}[fmt]
    options = {"reference_filename": str(reference)} if fmt == "cram" else {}
    try:
        return pysam.AlignmentFile(str(path), mode, check_sq=False, **options)
    except (OSError, ValueError) as error:
        message = one_line(error)
        if "EOF marker" in message or "truncated" in message:
            raise input_error(path, f"truncated {fmt.upper()} file ({message})") from None
        raise input_error(path, f"cannot open as {fmt.upper()}: {message}") from None


def _check_reference(path: Path, alignments: pysam.AlignmentFile, reference: Path) -> None:
    with open_indexed_fasta(reference) as genome:
        lengths = dict(zip(genome.references, genome.lengths, strict=True))
    for contig, length in zip(alignments.references, alignments.lengths, strict=True):
        if contig not in lengths:
            raise input_error(path, f"reference {reference} lacks contig {contig!r} of the CRAM")
        if lengths[contig] != length:
            raise input_error(
                path,
                f"contig {contig!r} is {length} bp in the CRAM but {lengths[contig]} bp "
                f"in reference {reference}",
            )


def _read_name(read: pysam.AlignedSegment) -> str:
    name = read.query_name or ""
    if read.is_paired:
        return f"{name}/1" if read.is_read1 else f"{name}/2"
    return name
