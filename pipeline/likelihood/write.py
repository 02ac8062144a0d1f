"""Scoring an input into its track files: bedGraph, bigWig and summary, all or nothing."""

from __future__ import annotations

import json
import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_file
from pipeline.likelihood.scoring import LikelihoodScorer
from pipeline.likelihood.sources import Sources, Target
from pipeline.likelihood.tracks import BedGraphWriter, bedgraph_to_bigwig
from pipeline.progress import Progress

log = logging.getLogger("pipeline")
_TRACK_SUFFIXES = (".gz", ".bedgraph", ".bedGraph", ".bg")


@dataclass(frozen=True)
class TrackPaths:
    """Where the outputs go: bedGraph, bigWig (None: not written) and summary JSON."""

    bedgraph: Path
    bigwig: Path | None
    summary: Path


def output_paths(bedgraph: Path, *, bigwig: bool) -> TrackPaths:
    """The bedGraph and, beside it, `<stem>.bw` and `<stem>.json`."""
    stem = bedgraph
    while stem.suffix in _TRACK_SUFFIXES:
        stem = stem.with_suffix("")
    if stem == bedgraph:
        stem = bedgraph.with_name(bedgraph.name + ".track")
    return TrackPaths(
        bedgraph, stem.with_suffix(".bw") if bigwig else None, stem.with_suffix(".json")
    )


@dataclass
class _Tally:
    """Scored bases and their summed −log2 p."""

    bases: int = 0
    bits: float = 0.0

    def add(self, values: np.ndarray) -> None:
        known = values[~np.isnan(values)]
        self.bases += int(known.size)
        self.bits -= float(known.sum(dtype=np.float64))

    @property
    def bits_per_base(self) -> float | None:
        return self.bits / self.bases if self.bases else None


def write_tracks(
    scorer: LikelihoodScorer, sources: Sources, paths: TrackPaths, about: dict[str, Any]
) -> dict[str, Any]:
    """Score every target of `sources` into the files of `paths`; returns the summary."""
    with ExitStack() as stack:
        bedgraph_tmp = stack.enter_context(atomic_file(paths.bedgraph))
        bigwig_tmp = stack.enter_context(atomic_file(paths.bigwig)) if paths.bigwig else None
        summary_tmp = stack.enter_context(atomic_file(paths.summary))
        with bedgraph_tmp.open("w") as handle:
            writer = BedGraphWriter(handle, paths.bedgraph.stem, "log2 p(base | preceding bases)")
            records, total = _score_all(scorer, sources, writer)
        if bigwig_tmp is not None:
            bedgraph_to_bigwig(bedgraph_tmp, bigwig_tmp, writer.chroms, sources.lengths)
        summary = {
            **about,
            "unit": "bits (log2)",
            "records": records,
            "scored_bases": total.bases,
            "bits_per_base": total.bits_per_base,
        }
        summary_tmp.write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "%s bases scored over %d record(s): %s bits/base; wrote %s",
        f"{total.bases:,}",
        len(records),
        "n/a" if total.bits_per_base is None else f"{total.bits_per_base:.4f}",
        ", ".join(str(p) for p in (paths.bedgraph, paths.bigwig, paths.summary) if p),
    )
    return summary


def _score_all(
    scorer: LikelihoodScorer, sources: Sources, writer: BedGraphWriter
) -> tuple[list[dict[str, Any]], _Tally]:
    records, total = [], _Tally()
    progress = Progress(None, "likelihood", "bp")
    for target, stretches in scorer.score(sources.targets):
        tally = _Tally()
        if target.strand == "+":
            offset = target.start
            for values in stretches:
                writer.write(target.chrom, offset, values)
                tally.add(values)
                offset += len(values)
                progress.update(len(values))
        else:  # scores run from the interval's end backwards: write them once reversed
            values = np.concatenate(list(stretches))[::-1]
            writer.write(target.chrom, target.start, values)
            tally.add(values)
            progress.update(len(values))
        total.bases += tally.bases
        total.bits += tally.bits
        records.append(_record(target, tally))
    progress.close(records=len(records))
    return records, total


def _record(target: Target, tally: _Tally) -> dict[str, Any]:
    bits = tally.bits_per_base
    return {
        "name": target.name,
        "chrom": target.chrom,
        "start": target.start,
        "end": target.end,
        "strand": target.strand,
        "context": target.context,
        "scored_bases": tally.bases,
        "bits_per_base": None if bits is None or math.isnan(bits) else bits,
    }
