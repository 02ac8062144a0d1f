"""Region lists: one samtools/IGV-style region per line, as genome intervals.

A line is `chrom:start-end`, 1-based and inclusive, thousands separators allowed
(`chr20:1,000,001-1,002,000`). Each becomes a BED interval (0-based, half-open) on the + strand.
Blank lines and `#` comments are skipped; any other line is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import input_error
from pipeline.io.bed import BedInterval
from pipeline.io.files import check_readable, open_text

_REGION = re.compile(r"(?P<chrom>\S+):(?P<start>[\d,]+)-(?P<end>[\d,]+)")


def region_id(chrom: str, start: int, end: int, strand: str | None = None) -> str:
    """`chrom:start-end` of 0-based half-open [start, end), written 1-based and inclusive (as
    samtools and IGV read it), with `(strand)` when given."""
    return f"{chrom}:{start + 1}-{end}" + (f"({strand})" if strand else "")


def parse_region(text: str) -> tuple[str, int, int]:
    """(chrom, 0-based start, end) of `chrom:start-end` (1-based, inclusive); ValueError."""
    match = _REGION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected chrom:start-end, got {text.strip()!r}")
    start, end = (int(match[name].replace(",", "")) for name in ("start", "end"))
    if start < 1 or end < start:
        raise ValueError(f"{text.strip()}: need 1 <= start <= end (1-based, inclusive)")
    return match["chrom"], start - 1, end


def read_region_intervals(path: str | Path) -> Iterator[BedInterval]:
    """Intervals of a region list (plain or gzip) in file order."""
    path = check_readable(path)
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                chrom, start, end = parse_region(line)
            except ValueError as err:
                raise input_error(path, f"line {number}: {err}") from None
            yield BedInterval(chrom, start, end, "+", number)
