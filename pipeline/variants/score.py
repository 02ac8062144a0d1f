"""Scoring variants: from a VCF file into an annotated VCF (the command), or from a list of
alleles into a list of scores (for notebooks)."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam
import torch

from pipeline.errors import input_error
from pipeline.io import open_indexed_fasta
from pipeline.progress import Progress
from pipeline.variants.alleles import normalize, ref_matches, skip_reason
from pipeline.variants.output import add_info_header, write_outputs
from pipeline.variants.records import Target, open_vcf, read_records
from pipeline.variants.scoring import VariantScorer
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import DNATokenizer

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class VariantScore:
    """The scores of one allele (nats); NaN with `skipped` set when it was not scored."""

    chrom: str
    pos: int  # 1-based
    ref: str
    alt: str
    llr: float
    llr_fwd: float
    llr_rev: float
    skipped: str | None


def score_targets(
    scorer: VariantScorer, fasta: pysam.FastaFile, targets: Sequence[Target]
) -> list[tuple[float, float]]:
    """(LLR_fwd, LLR_rev) of every target, contig by contig (one contig in memory at a time)."""
    scores: list[tuple[float, float]] = [(math.nan, math.nan)] * len(targets)
    by_contig: dict[str, list[int]] = {}
    for index, target in enumerate(targets):
        by_contig.setdefault(target.chrom, []).append(index)
    tokenizer = DNATokenizer()
    for chrom, indices in by_contig.items():
        sequence = tokenizer.encode(fasta.fetch(chrom), invalid="n")[0]
        for index, pair in scorer.score_contig(list(targets), indices, sequence).items():
            scores[index] = pair
    return scores


def score_variants(
    lm: TitansLM,
    genome: str | Path,
    variants: Sequence[tuple[str, int, str, str]],
    *,
    window: int = 128,
    context: int | None = 8192,
    method: str = "stream",
    device: str | torch.device = "cpu",
) -> list[VariantScore]:
    """Scores of (chrom, 1-based pos, REF, ALT) alleles against `genome` (an indexed FASTA).

    Alleles that cannot be scored (symbolic, REF not in the genome) come back with NaN scores
    and the reason in `skipped`; an unknown contig is a PipelineError.
    """
    scorer = VariantScorer(lm, torch.device(device), window=window, context=context, method=method)
    with open_indexed_fasta(genome) as fasta:
        targets, reasons, sequences = [], [], {}  # sequences: the current contig only
        for chrom, pos, ref, alt in variants:
            if chrom not in fasta.references:
                raise input_error(Path(genome), f"contig {chrom!r} is not in the genome")
            if chrom not in sequences:  # once per contig: a contig is tens of Mbp
                sequences = {chrom: fasta.fetch(chrom).upper().encode()}
            sequence = sequences[chrom]
            reason = skip_reason(alt) or (None if ref_matches(sequence, pos - 1, ref) else
                                          "ref_mismatch")  # fmt: skip
            reasons.append(reason)
            if reason is None:
                targets.append(Target(len(reasons) - 1, chrom, normalize(sequence, pos - 1, ref,
                                                                          alt)))  # fmt: skip
        scored = dict(zip((t.record for t in targets), score_targets(scorer, fasta, targets),
                          strict=True))  # fmt: skip
    out = []
    for index, ((chrom, pos, ref, alt), reason) in enumerate(zip(variants, reasons, strict=True)):
        fwd, rev = scored.get(index, (math.nan, math.nan))
        out.append(VariantScore(chrom, pos, ref, alt, (fwd + rev) / 2, fwd, rev, reason))
    return out


def score_vcf(
    scorer: VariantScorer,
    vcf: Path,
    genome: Path,
    out: Path,
    *,
    tsv: Path | None = None,
    ref_mismatch: str = "error",
    about: str = "",
) -> Counter:
    """Annotate every record of `vcf` into `out` (and `tsv`); returns counts of what happened."""
    with open_indexed_fasta(genome) as fasta:
        records, targets, header = read_records(vcf, fasta, ref_mismatch=ref_mismatch)
        if not records:
            log.warning("%s holds no records", vcf)
        scorer.progress = Progress(None, "score-variants", "bp")
        scores = score_targets(scorer, fasta, targets)
        scorer.progress.close(alleles=len(targets))
    add_info_header(header, about)
    with open_vcf(vcf) as source:
        write_outputs(source, header, records, scores, out, tsv)
    counts: Counter = Counter()
    for record in records:
        for target, skipped in zip(record.targets, record.skipped, strict=True):
            unscored = target is None or not np.isfinite(scores[target][0] + scores[target][1])
            counts[skipped or ("unscorable" if unscored else "scored")] += 1
    return counts
