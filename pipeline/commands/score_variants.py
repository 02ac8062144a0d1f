"""Score the variants of a VCF with a Titans model: alt against ref log-likelihood ratios.

For each ALT allele: the log-likelihood of the alternative haplotype minus that of the
reference over a window from the variant on (the alleles and --window bases after them), on
both strands, in nats; the definition is in the README ("Variant scores"). Equivalent
descriptions of an indel (normalized or not) get the same score. Left context comes from one
streamed pass over each contig (--method stream): every variant sees at least --context bases,
and up to the whole contig with --context contig; --method window scores every variant on its
own with exactly --context bases (the baseline, slower on dense variants).

The output keeps every input record, in input order, with INFO fields TITANS_LLR (mean of the
strands), TITANS_LLR_FWD, TITANS_LLR_REV and TITANS_SKIP (why an allele was not scored:
symbolic, breakend, missing_alt, ref_mismatch), bgzipped with a tabix index (.tbi); --tsv adds a
table. Multi-allelic records get one value per ALT. Input: VCF, bgzip or plain gzip, any order.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import add_checkpoint, add_device, add_output, positive_int

HELP = "variant-effect scores (alt vs ref log-likelihood ratio) of a VCF"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vcf", required=True, help="variants (VCF, bgzip or gzip)")
    parser.add_argument("--genome", required=True, help="reference FASTA (indexed or indexable)")
    add_checkpoint(parser, "TitansLM or classifier checkpoint")
    add_output(parser, "scored VCF to write (.vcf.gz)")
    parser.add_argument("--tsv", help="also write a table: chrom, pos, ref, alt, scores")
    parser.add_argument(
        "--window", type=positive_int, default=128, help="bases scored after the alleles"
    )
    parser.add_argument(
        "--context",
        default="8192",
        metavar="N|contig",
        help="left context: at least N bases (stream), exactly N (window), or the whole contig",
    )
    parser.add_argument(
        "--method",
        choices=("stream", "window"),
        default="stream",
        help="one streamed pass per contig, or every variant on its own",
    )
    parser.add_argument(
        "--ref-mismatch",
        choices=("error", "skip"),
        default="error",
        help="a REF that differs from the genome: fail naming the line, or skip the record",
    )
    parser.add_argument("--batch", type=positive_int, default=16, help="variants per batch")
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from pipeline.atomic import check_output_parent
    from pipeline.checkpoints import load_backbone
    from pipeline.device import resolve_device
    from pipeline.errors import PipelineError
    from pipeline.variants.score import score_vcf
    from pipeline.variants.scoring import VariantScorer

    context = None if args.context == "contig" else _context(args.context)
    out = check_output_parent(args.output)
    if not out.name.endswith(".vcf.gz"):
        raise PipelineError(f"{out}: the output is a bgzipped VCF: name it .vcf.gz")
    tsv = check_output_parent(args.tsv) if args.tsv else None
    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    try:
        scorer = VariantScorer(lm, device, window=args.window, context=context,
                               method=args.method, batch=args.batch)  # fmt: skip
    except ValueError as err:
        raise PipelineError(f"--method {args.method}: {err}") from None
    about = (f"checkpoint={directory} method={args.method} window={args.window} "
             f"context={args.context} units=nats")  # fmt: skip
    counts = score_vcf(scorer, Path(args.vcf), Path(args.genome), out, tsv=tsv,
                       ref_mismatch=args.ref_mismatch, about=about)  # fmt: skip
    logging.getLogger("pipeline").info(
        "wrote %s: %s", out, ", ".join(f"{n:,} {what}" for what, n in sorted(counts.items()))
    )
    return 0


def _context(text: str) -> int:
    from pipeline.errors import PipelineError

    if not text.isdigit() or int(text) < 0:
        raise PipelineError(f"--context must be a number of bases or 'contig', got {text!r}")
    return int(text)
