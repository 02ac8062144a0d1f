"""Format detection from file content (never from the file name).

Compressed inputs are recognised by their magic bytes (gzip, and BGZF: gzip blocks carrying a
`BC` extra field), then the first decompressed bytes decide: `BAM\\1` is BAM, `>` FASTA, `@`
FASTQ (or SAM when the line is a SAM header tag), `LOCUS` GenBank, `ID ` EMBL, tab-separated
`chrom start end` BED, and `chrom:start-end` lines a region list. `CRAM` magic is CRAM.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from pipeline.errors import input_error
from pipeline.io.files import GZIP_MAGIC, check_readable

FORMATS = ("fasta", "fastq", "genbank", "embl", "bam", "cram", "sam", "bed", "regions")
INTERVAL_FORMATS = ("bed", "regions")  # genome intervals, cut from --genome
_PEEK_BYTES = 65536
_SAM_HEADER = re.compile(rb"@(HD|SQ|RG|PG|CO)\t")
_BED_LINE = re.compile(rb"\S+[ \t]+-?\d+[ \t]+-?\d+([ \t]|$)")  # bad signs: the parser's error
_REGION_LINE = re.compile(rb"\S+:[\d,]+-[\d,]+")
_BED_SKIP = (b"#", b"track", b"browser")
_SEQUENCE_LINE = re.compile(rb"[A-Za-z*\-]+")
_KNOWN = "FASTA, FASTQ, GenBank, EMBL, BAM, CRAM, SAM, BED or a region list"


def peek(path: Path) -> tuple[bytes, bool]:
    """First decompressed bytes of `path` (up to 64 KiB), and whether it is gzip-compressed."""
    with path.open("rb") as handle:
        raw = handle.read(_PEEK_BYTES)
    if not raw:
        raise input_error(path, "empty file")
    if not raw.startswith(GZIP_MAGIC):
        return raw, False
    inflater = zlib.decompressobj(wbits=31)
    try:
        head = inflater.decompress(raw, _PEEK_BYTES)
    except zlib.error as error:
        raise input_error(path, f"corrupt gzip data: {error}") from None
    if not head:
        if inflater.eof:
            raise input_error(path, "empty file (no data after decompression)")
        raise input_error(path, "truncated gzip data: no content could be decompressed")
    return head, True


def detect_format(path: str | Path) -> str:
    """One of FORMATS, from the content; PipelineError naming the file when none fits."""
    path = check_readable(path)
    head, _ = peek(path)
    if head.startswith(b"CRAM"):
        return "cram"
    if head.startswith(b"BAM\x01"):
        return "bam"
    return _detect_text(path, head)


def _detect_text(path: Path, head: bytes) -> str:
    if _looks_binary(head):
        raise input_error(path, f"binary data, not a sequence file ({_KNOWN})")
    text = head.lstrip()
    if not text:
        raise input_error(path, "empty file (only whitespace)")
    if text.startswith(b">"):
        return "fasta"
    if _SAM_HEADER.match(text):
        return "sam"
    if text.startswith(b"@"):
        return "fastq"
    if text.startswith(b"LOCUS"):
        return "genbank"
    if text.startswith(b"ID "):
        return "embl"
    first = _first_data_line(text)
    if not first:
        raise input_error(path, "no data: only header or comment lines")
    if _BED_LINE.match(first):
        return "bed"
    if _REGION_LINE.fullmatch(first):
        return "regions"
    if _SEQUENCE_LINE.fullmatch(first.rstrip()):
        raise input_error(path, "FASTA with no header line: the first line is sequence data")
    shown = first[:40].decode("ascii", "replace")
    raise input_error(path, f"unrecognised format (not {_KNOWN}); first line starts {shown!r}")


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    sample = head[:4096]
    controls = sum(1 for byte in sample if byte < 32 and byte not in b"\t\n\r\f\v")
    return controls > len(sample) // 100


def _first_data_line(text: bytes) -> bytes:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(_BED_SKIP):
            return stripped
    return b""
