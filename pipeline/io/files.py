"""File-level helpers shared by the readers: checks, opening, and one-line error messages."""

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

GZIP_MAGIC = b"\x1f\x8b"
# The empty block that ends every complete BGZF file (SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_readable(path: str | Path) -> Path:
    """Return `path` as a Path if it is a readable regular file, else a PipelineError."""
    if isinstance(path, str) and URL.match(path) and not Path(path).exists():
        raise input_error(path, "is a URL: download it first (titans-dna fetch)")
    path = Path(path)
    if not path.exists():
        raise input_error(path, "no such file")
    if path.is_dir():
        raise input_error(path, "is a folder, not a file")
    if not path.is_file():
        raise input_error(
            path, "is not a regular file (a pipe or device is read more than once here: save the "
            "data to a file first)",
        )  # fmt: skip
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        raise input_error(path, f"cannot read: {error.strerror or error}") from None
    return path


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes (gzip or bgzip)."""
    with path.open("rb") as handle:
        return handle.read(2) == GZIP_MAGIC


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


@contextmanager
def open_text(path: Path) -> Iterator[TextIO]:
    """Open a plain or gzip text file; lines come back with CRLF turned into LF."""
    opener = gzip.open if is_gzip(path) else open
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
