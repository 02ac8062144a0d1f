"""The record type every reader yields, and the checks shared by all readers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import input_error


@dataclass(frozen=True)
class SequenceRecord:
    """One named sequence: raw bytes as in the file (case kept, no line breaks)."""

    name: str
    sequence: bytes


def checked_records(
    records: Iterable[SequenceRecord], path: Path, what: str = "sequence records"
) -> Iterator[SequenceRecord]:
    """Pass `records` through, failing on an empty name, a repeated name, or no records at all."""
    seen: set[str] = set()
    for record in records:
        if not record.name:
            raise input_error(path, f"record {len(seen) + 1} has an empty name")
        if record.name in seen:
            raise input_error(path, f"duplicate record name {record.name!r}")
        seen.add(record.name)
        yield record
    if not seen:
        raise input_error(path, f"no {what} in the file")
