"""Input checks and format detection from file content (never from the file name).

Compressed inputs are recognised by their magic bytes (gzip, and BGZF: gzip blocks carrying a
`BC` extra field), then the first decompressed bytes decide: `BAM\\1` is BAM, `>` FASTA, `@`
FASTQ (or SAM when the line is a SAM header tag), `LOCUS` GenBank, `ID ` EMBL, and tab-separated
`chrom start end` BED. `CRAM` magic is CRAM.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import pysam

from pipeline.errors import PipelineError, input_error

FORMATS = ("fasta", "fastq", "genbank", "embl", "bam", "cram", "sam", "bed")
GZIP_MAGIC = b"\x1f\x8b"
# The empty block that ends every complete BGZF file (SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_PEEK_BYTES = 65536
_SAM_HEADER = re.compile(rb"@(HD|SQ|RG|PG|CO)\t")
_BED_LINE = re.compile(rb"\S+[ \t]+\d+[ \t]+\d+([ \t]|$)")
_BED_SKIP = (b"#", b"track", b"browser")
_SEQUENCE_LINE = re.compile(rb"[A-Za-z*\-]+")
_KNOWN = "FASTA, FASTQ, GenBank, EMBL, BAM, CRAM, SAM or BED"


def check_readable(path: str | Path) -> Path:
    """Return `path` as a Path if it is a readable regular file, else a PipelineError."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, "no such file")
    if path.is_dir():
        raise input_error(path, "is a folder, not a file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise input_error(path, f"cannot read: {error.strerror or error}") from None
    return path


def is_bgzf(path: Path) -> bool:
    """True when the file starts with a BGZF block (bgzip, BAM)."""
    with path.open("rb") as handle:
        head = handle.read(18)
    return len(head) >= 14 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def check_bgzf_eof(path: Path) -> None:
    """A BGZF file must end with the EOF block; without it the file was cut short."""
    with path.open("rb") as handle:
        handle.seek(0, io.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - len(BGZF_EOF)))
        tail = handle.read()
    if tail != BGZF_EOF:
        raise input_error(path, "truncated file: the BGZF end-of-file block is missing")


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
    if _BED_LINE.match(first):
        return "bed"
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


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """Open a plain or gzip text file; lines come back with CRLF turned into LF."""
    with path.open("rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline=None) as handle:
        yield handle


@contextmanager
def quiet_htslib() -> Iterator[None]:
    """Silence htslib's own stderr lines: failures surface as one PipelineError instead."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def one_line(error: BaseException) -> str:
    """An exception's message squeezed onto one line."""
    return " ".join(str(error).split()) or type(error).__name__


def read_failure(path: Path, error: BaseException, where: str) -> PipelineError:
    """A library's read error turned into the standard one-line error."""
    message = one_line(error)
    if isinstance(error, EOFError | zlib.error | gzip.BadGzipFile):
        return input_error(path, f"truncated or corrupt compressed data {where} ({message})")
    if "truncated" in message or "unknown problem parsing" in message:
        # kseq's "unknown problem" is a failed read of the (compressed) stream
        return input_error(path, f"truncated or corrupt file {where} ({message})")
    return input_error(path, f"cannot read {where}: {message}")
