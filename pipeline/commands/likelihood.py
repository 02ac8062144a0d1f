"""Per-base log-likelihood tracks of sequences under a Titans model.

INPUT is a sequence file (FASTA/FASTQ, plain, gzip or bgzip, GenBank/EMBL, BAM/CRAM), or genome
intervals with --genome: a BED file (strand-aware) or a region list (one `chrom:start-end` per
line, 1-based inclusive as in samtools). Every base gets log2 p(base | all bases before it in
its record or interval, plus --context bases of genome before an interval); the first base of a
record and N get no value. Any length streams through the model's recurrent state with memory
bounded by the piece length.

Writes OUTPUT (bedGraph, 0-based half-open, genome coordinates for intervals), beside it a bigWig
of the same values (OUTPUT with the suffix .bw) and a summary (suffix .json: bits per base of
every record and in total). Each file is written under a temporary name and renamed when all
are complete.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import (
    add_checkpoint,
    add_device,
    add_invalid,
    add_output,
    non_negative_int,
    positive_int,
)

HELP = "per-base log-likelihood tracks (bedGraph, bigWig) and bits/base of sequences"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="sequences, BED intervals or regions")
    add_checkpoint(parser, "TitansLM or classifier checkpoint")
    add_output(parser, "bedGraph file to write")
    parser.add_argument("--genome", help="indexed genome FASTA of BED or region inputs")
    parser.add_argument("--reference", help="reference FASTA for CRAM input")
    parser.add_argument(
        "--context",
        type=non_negative_int,
        default=0,
        help="bases of genome before each interval read as left context (not written)",
    )
    parser.add_argument(
        "--bigwig",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write OUTPUT's values as a bigWig (suffix .bw)",
    )
    parser.add_argument(
        "--piece-len",
        type=positive_int,
        help="tokens per streamed piece, a multiple of the model's segment/chunk length "
        "(default: the smallest such multiple >= 2048)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=positive_int,
        default=32768,
        help="tokens per batch of short records or intervals",
    )
    add_invalid(parser)
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.atomic import check_output_parent
    from pipeline.batching import stream_piece_len
    from pipeline.checkpoints import load_backbone, weights_sha256
    from pipeline.device import resolve_device
    from pipeline.errors import PipelineError
    from pipeline.likelihood.scoring import LikelihoodScorer
    from pipeline.likelihood.sources import read_targets
    from pipeline.likelihood.write import output_paths, write_tracks

    paths = output_paths(check_output_parent(args.output), bigwig=args.bigwig)
    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    piece_len = args.piece_len or stream_piece_len(lm.config.stream_multiple)
    try:
        scorer = LikelihoodScorer(lm, device, piece_len, args.batch_tokens)
    except ValueError as err:
        raise PipelineError(f"--piece-len: {err}") from None
    sources = read_targets(
        args.input,
        genome=args.genome,
        reference=args.reference,
        context=args.context,
        invalid=args.invalid,
    )
    about = {
        "input": str(args.input),
        "checkpoint": str(directory),
        "weights_sha256": weights_sha256(directory),
        "piece_len": piece_len,
        "context": args.context,
    }
    write_tracks(scorer, sources, paths, about)
    return 0
