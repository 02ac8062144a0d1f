"""The scored VCF (bgzip + tabix, every input record kept, INFO fields added) and the TSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import pysam

from pipeline.atomic import atomic_file, write_failure
from pipeline.variants.records import Record

# (INFO key, description); every one has a value per ALT allele (Number=A).
INFO_FIELDS = (
    ("TITANS_LLR", "Float", "log-likelihood ratio alt vs ref, mean of both strands (nats)"),
    ("TITANS_LLR_FWD", "Float", "log-likelihood ratio alt vs ref on the forward strand (nats)"),
    ("TITANS_LLR_REV", "Float", "log-likelihood ratio alt vs ref on the reverse strand (nats)"),
    ("TITANS_SKIP", "String", "why the allele was not scored (. when it was)"),
)
TSV_COLUMNS = ("chrom", "pos", "ref", "alt", "llr", "llr_fwd", "llr_rev", "skipped")


def add_info_header(header: pysam.VariantHeader, about: str) -> None:
    """Declare the INFO fields (and a line saying how they were made) in `header`."""
    for key, kind, description in INFO_FIELDS:
        if key in header.info:
            header.info.remove_header(key)
        header.info.add(key, "A", kind, f"titans-dna score-variants: {description}")
    header.add_line(f"##titans-dna_score-variants={about}")


def write_outputs(
    source: pysam.VariantFile,
    header: pysam.VariantHeader,
    records: Sequence[Record],
    scores: Sequence[tuple[float, float] | None],
    vcf: Path,
    tsv: Path | None,
) -> None:
    """Copy every record of `source` (in order) with its scores into `vcf` (bgzipped, with a
    .tbi index) and `tsv`; all files appear together when complete."""
    with ExitStack() as stack:
        vcf_tmp = stack.enter_context(atomic_file(vcf))
        index_tmp = stack.enter_context(atomic_file(Path(f"{vcf}.tbi")))
        tsv_tmp = stack.enter_context(atomic_file(tsv)) if tsv is not None else None
        try:
            with pysam.VariantFile(str(vcf_tmp), "wz", header=header) as out:
                rows = _write(source, records, scores, out)
            # tabix names the index after the file it indexes: build it beside the temporary
            pysam.tabix_index(str(vcf_tmp), preset="vcf", force=True, keep_original=True)
            os.replace(f"{vcf_tmp}.tbi", index_tmp)
        except OSError as error:
            raise write_failure(vcf, error) from None
        if tsv_tmp is not None:
            with open(tsv_tmp, "w", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(TSV_COLUMNS)
                writer.writerows(rows)


def _write(source, records, scores, out) -> list[list]:
    rows = []
    for rec, record in zip(source, records, strict=True):
        rec.translate(out.header)
        values: dict[str, list] = {key: [] for key, _, _ in INFO_FIELDS}
        for alt, target, skipped in zip(record.alts, record.targets, record.skipped, strict=True):
            fwd, rev = scores[target] if target is not None else (math.nan, math.nan)
            mean = (fwd + rev) / 2
            reason = skipped or ("unscorable" if math.isnan(mean) else None)
            for key, value in zip(values, (mean, fwd, rev), strict=False):
                values[key].append(None if reason else round(value, 6))
            values["TITANS_SKIP"].append(reason or ".")
            rows.append([record.chrom, record.pos, record.ref, alt,
                         *(_cell(v) for v in (mean, fwd, rev)), reason or ""])  # fmt: skip
        if rec.alts:  # a record without ALT has nothing to annotate: it is copied as it is
            for key, items in values.items():
                rec.info[key] = tuple(items)
        out.write(rec)
    return rows


def _cell(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"
