"""FASTA and FASTQ (plain, gzip, bgzip) through pysam: streaming, and indexed random access."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pysam

from pipeline.errors import input_error
from pipeline.io.detect import detect_format
from pipeline.io.files import (
    check_bgzf_eof,
    check_readable,
    is_bgzf,
    is_gzip,
    one_line,
    quiet_htslib,
    read_failure,
)
from pipeline.io.indexed import MAX_CHECKED_RECORDS, index_matches, read_fai
from pipeline.io.records import SequenceRecord


def read_fastx(path: Path) -> Iterator[SequenceRecord]:
    """Records of a FASTA or FASTQ file in file order (CRLF line ends are stripped by pysam)."""
    if is_bgzf(path):
        check_bgzf_eof(path)
    name = None
    with quiet_htslib():
        try:
            # persist=False hands out proxies: the name is readable even when the sequence
            # is not valid text, so the error can name the record.
            with pysam.FastxFile(str(path), persist=False) as records:
                for proxy in records:
                    name = proxy.name or ""
                    yield SequenceRecord(name, _sequence_bytes(path, proxy, name))
        except (OSError, ValueError, EOFError) as error:
            where = "at the start" if name is None else f"after record {name!r}"
            raise read_failure(path, error, where) from None


def _sequence_bytes(path: Path, proxy: pysam.FastqProxy, name: str) -> bytes:
    try:
        sequence = proxy.sequence or ""
    except UnicodeDecodeError as error:
        raise input_error(
            path,
            f"record {name!r}: byte 0x{error.object[error.start]:02x} at sequence offset "
            f"{error.start} (0-based) is not text",
        ) from None
    return sequence.encode("utf-8")


def open_indexed_fasta(path: str | Path, *, build_index: bool = True) -> pysam.FastaFile:
    """Open a FASTA (plain or bgzip) for random access by coordinates.

    The `.fai` index (and `.gzi` for bgzip) is built beside the file when missing, if
    `build_index` is true and the folder is writable; otherwise a PipelineError says what to do.
    """
    path = check_readable(path)
    fmt = detect_format(path)
    if fmt != "fasta":
        raise input_error(path, f"expected an indexable FASTA genome, found {fmt}")
    if _index_missing(path):
        _build_index(path, build_index)
    _check_index(path)
    with quiet_htslib():
        try:
            return pysam.FastaFile(str(path))
        except (OSError, ValueError) as error:
            raise input_error(path, f"cannot open as indexed FASTA: {one_line(error)}") from None


def _index_missing(path: Path) -> bool:
    needed = [Path(f"{path}.fai")] + ([Path(f"{path}.gzi")] if is_bgzf(path) else [])
    return not all(p.is_file() for p in needed)


def _check_index(path: Path) -> None:
    entries = read_fai(Path(f"{path}.fai"))
    if entries and len(entries) <= MAX_CHECKED_RECORDS and not index_matches(path, entries):
        raise input_error(
            path,
            "its .fai index does not match the file (stale, or built over duplicate record "
            "names); remove the index to rebuild it",
        )


def _build_index(path: Path, build_index: bool) -> None:
    if is_gzip(path) and not is_bgzf(path):
        raise input_error(
            path, "gzip (not bgzip) FASTA has no random access; recompress it with bgzip"
        )
    if not build_index:
        raise input_error(path, "no .fai index beside the FASTA (run: samtools faidx FILE)")
    if not os.access(path.parent, os.W_OK):
        raise input_error(
            path, f"no .fai index and {path.parent} is not writable to build one (samtools faidx)"
        )
    if is_bgzf(path):
        check_bgzf_eof(path)
    with quiet_htslib():
        try:
            pysam.faidx(str(path))
        except (OSError, pysam.SamtoolsError) as error:
            raise input_error(path, f"cannot build the .fai index: {one_line(error)}") from None
