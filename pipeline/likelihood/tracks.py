"""Track files of per-base values: bedGraph (streamed), bigWig (converted from it), summary.

bedGraph lines are `chrom start end value` (0-based, half-open), chromosomes in order of first
appearance and positions ascending within each; runs of adjacent bases whose values print the
same (4 decimals) share one line, and bases without a value (N, a record's first base) have none.
The bigWig holds the same intervals (for IGV and the UCSC browser).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from pipeline.errors import PipelineError


class BedGraphWriter:
    """Writes values at positions of one chromosome after another into an open text file."""

    def __init__(self, handle: TextIO, name: str, description: str) -> None:
        self.handle = handle
        self.chroms: list[str] = []
        handle.write(f'track type=bedGraph name="{name}" description="{description}"\n')

    def write(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Values of consecutive positions start, start + 1, ... of `chrom` (NaN: none)."""
        if not self.chroms or self.chroms[-1] != chrom:
            if chrom in self.chroms:
                raise ValueError(f"{chrom} written again after another chromosome")
            self.chroms.append(chrom)
        text = np.char.mod("%.4f", values)
        known = ~np.isnan(values)
        # a run starts where the value or its presence changes
        change = np.ones(len(values), bool)
        change[1:] = (text[1:] != text[:-1]) | (known[1:] != known[:-1])
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], len(values))
        lines = [
            f"{chrom}\t{start + lo}\t{start + hi}\t{text[lo]}\n"
            for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)
            if known[lo]
        ]
        self.handle.writelines(lines)


def read_bedgraph(path: Path) -> Iterator[tuple[str, int, int, float]]:
    """(chrom, start, end, value) of every data line of a bedGraph."""
    with path.open() as handle:
        for line in handle:
            if line.startswith(("track", "browser", "#")):
                continue
            chrom, start, end, value = line.split("\t")
            yield chrom, int(start), int(end), float(value)


def bedgraph_to_bigwig(bedgraph: Path, bigwig: Path, chroms: list[str], lengths: dict[str, int]):
    """Write the intervals of `bedgraph` (chromosomes in the order `chroms`) as a bigWig with
    zoom levels, in memory that does not grow with the track (pyBigWig's does: it holds the
    whole track to build the zoom levels; docs/benchmarks.md)."""
    try:
        import pybigtools
    except ImportError:
        raise PipelineError("writing bigWig needs pybigtools (pip install pybigtools)") from None
    entries = read_bedgraph(bedgraph)
    try:
        pybigtools.open(str(bigwig), "w").write({c: int(lengths[c]) for c in chroms}, entries)
    except OSError:  # a full disk or a read-only folder: the caller names the output
        raise
    except Exception as err:  # pybigtools reports write failures as its own exception types
        raise PipelineError(f"{bigwig}: cannot write the bigWig: {err}") from None
