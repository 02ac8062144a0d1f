"""Streaming an indexed FASTA (plain or bgzip with .fai/.gzi) in fixed-size segments.

Reading a long contig in segments bounds memory and lets reading overlap tokenizing. The index
is trusted only after checking that it tiles the file exactly: every byte is either the one
header line of an indexed record, or part of that record's sequence lines. A stale index, or
one built over duplicate names (htslib keeps the first and drops the rest), fails the check
and the caller falls back to reading the file record by record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam
from pysam.libcbgzf import BGZFile

from pipeline.errors import input_error
from pipeline.io.files import check_bgzf_eof, is_bgzf, one_line, quiet_htslib

MAX_CHECKED_RECORDS = 10_000
_MAX_HEADER_BYTES = 1 << 20  # a gap longer than this between records is not one header line


@dataclass(frozen=True)
class FaiEntry:
    """One line of a .fai index: sequence bytes start at `offset` (uncompressed)."""

    name: str
    length: int
    offset: int
    line_bases: int
    line_width: int

    def span(self) -> int:
        """Bytes from the first base to just after the last base (line breaks included)."""
        if self.length == 0:
            return 0
        full, rest = divmod(self.length, self.line_bases)
        if rest:
            return full * self.line_width + rest
        return (full - 1) * self.line_width + self.line_bases


def verified_index(path: Path) -> list[FaiEntry] | None:
    """The index entries of FASTA `path` if its index exists and tiles the file, else None.

    Files of more than MAX_CHECKED_RECORDS records return None: the check costs one small read
    per record, and short records gain nothing from segmented reading.
    """
    entries = read_fai(Path(f"{path}.fai"))
    if not entries or len(entries) > MAX_CHECKED_RECORDS:
        return None
    return entries if index_matches(path, entries) else None


def index_matches(path: Path, entries: list[FaiEntry]) -> bool:
    """True when the index entries tile the file: header lines and sequence lines, nothing else."""
    bgzf = is_bgzf(path)
    if bgzf:
        if not Path(f"{path}.gzi").is_file():
            return False
        check_bgzf_eof(path)
    try:
        with _RawReader(path, bgzf) as raw:
            return _tiles(raw, entries)
    except (OSError, ValueError):  # an unreadable or mismatched .gzi
        return False


def read_fai(fai: Path) -> list[FaiEntry] | None:
    """Entries of a FASTA .fai index; None when missing or not a FASTA index."""
    if not fai.is_file():
        return None
    entries = []
    for line in fai.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not all(f.isdigit() for f in fields[1:]):
            return None  # not a FASTA index (a FASTQ index has 6 columns)
        name, *numbers = fields
        entry = FaiEntry(name, *(int(n) for n in numbers))
        if entry.length and not 0 < entry.line_bases <= entry.line_width:
            return None
        entries.append(entry)
    return entries


def _tiles(raw: _RawReader, entries: list[FaiEntry]) -> bool:
    position = 0
    for entry in entries:
        gap = entry.offset - position
        if not 0 < gap <= _MAX_HEADER_BYTES:
            return False
        if not _is_header(raw.read_at(position, gap), entry.name):
            return False
        position = entry.offset + entry.span()
    tail = raw.read_at(position, _MAX_HEADER_BYTES + 1)
    return len(tail) <= _MAX_HEADER_BYTES and not tail.strip()


def _is_header(gap: bytes, name: str) -> bool:
    text = gap.lstrip()  # line break(s) ending the previous record
    if not text.startswith(b">") or not text.endswith(b"\n") or text.count(b"\n") != 1:
        return False
    words = text[1:].split(None, 1)
    return bool(words) and words[0] == name.encode("utf-8", "surrogateescape")


class _RawReader:
    """Uncompressed bytes at uncompressed offsets, of a plain file or a bgzip file with .gzi."""

    def __init__(self, path: Path, bgzf: bool):
        self._bgzf = bgzf
        if bgzf:
            self._handle = BGZFile(str(path), "rb")
            self._blocks = _read_gzi(Path(f"{path}.gzi"))
        else:
            self._handle = path.open("rb")

    def read_at(self, offset: int, size: int) -> bytes:
        if self._bgzf:
            # A BGZF virtual offset is (block's file offset << 16) | offset inside the block.
            block = int(np.searchsorted(self._blocks[:, 1], offset, side="right")) - 1
            compressed, uncompressed = (int(v) for v in self._blocks[block])
            if offset - uncompressed >= 1 << 16:  # past the last block: a stale .gzi
                raise ValueError(f"offset {offset} is beyond the .gzi blocks")
            self._handle.seek((compressed << 16) | (offset - uncompressed))
        else:
            self._handle.seek(offset)
        return self._handle.read(size)

    def __enter__(self) -> _RawReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _read_gzi(gzi: Path) -> np.ndarray:
    """Block starts [(compressed, uncompressed)], the first block (0, 0) included."""
    data = gzi.read_bytes()
    count = int.from_bytes(data[:8], "little")
    pairs = np.frombuffer(data, dtype="<u8", count=2 * count, offset=8).reshape(count, 2)
    return np.concatenate([np.zeros((1, 2), dtype=np.uint64), pairs]).astype(np.int64)


def iter_segments(
    path: Path, entries: list[FaiEntry], segment: int
) -> Iterator[tuple[int, int, bytes]]:
    """(record index, offset, bytes) pieces of at most `segment` bases, in file order."""
    with quiet_htslib(), pysam.FastaFile(str(path)) as fasta:
        for index, entry in enumerate(entries):
            for start in range(0, max(entry.length, 1), segment):
                stop = min(start + segment, entry.length)
                yield index, start, _fetch(path, fasta, entry.name, start, stop)


def _fetch(path: Path, fasta: pysam.FastaFile, name: str, start: int, stop: int) -> bytes:
    try:
        text = fasta.fetch(name, start, stop)
    except UnicodeDecodeError as error:
        raise input_error(
            path,
            f"record {name!r}: byte 0x{error.object[error.start]:02x} at sequence offset "
            f"{start + error.start} (0-based) is not text",
        ) from None
    except (OSError, ValueError) as error:
        message = one_line(error)
        raise input_error(path, f"record {name!r}: cannot read {start}-{stop}: {message}") from None
    if len(text) != stop - start:
        raise input_error(path, f"record {name!r}: the .fai index does not match the file")
    return text.encode("utf-8")
