"""Embed sequences with a Titans model into an HDF5 file.

INPUT is FASTA/FASTQ (plain or gzip), GenBank/EMBL, BAM/CRAM (--reference for CRAM), BED with
--genome, or a CSV with a `sequence` column. Each record (or each --window slice of it) gets a
pooled vector in /embeddings; --per-token adds /token_embeddings with /offsets. Sequences of any
length stream through the model's recurrent state, so memory does not grow with length and the
result equals one pass. CHECKPOINT is a pretrained TitansLM or a fine-tuned classifier (its
language model is used). The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import (
    FREE_POOLINGS,
    add_checkpoint,
    add_device,
    add_invalid,
    add_output,
    add_rc_average,
    add_switch,
    positive_int,
)

HELP = "embed sequences (FASTA/FASTQ/BAM/CRAM/BED/CSV) into HDF5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="sequences to embed")
    add_checkpoint(parser, "TitansLM or fine-tuned classifier checkpoint folder")
    add_output(parser, "output HDF5 file")
    parser.add_argument("--reference", help="reference FASTA for CRAM input")
    parser.add_argument("--genome", help="indexed genome FASTA for BED input")
    parser.add_argument(
        "--pooling",
        choices=FREE_POOLINGS,
        default="mean",
        help="pooling over tokens (parameter-free: an attention query exists only in a "
        "fine-tuned classifier)",
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="stored precision"
    )
    add_switch(parser, "per-token", False, "also store every token's hidden state")
    parser.add_argument(
        "--window", type=positive_int, help="cut records into windows of this many bases"
    )
    parser.add_argument("--stride", type=positive_int, help="window step (default: --window)")
    add_rc_average(parser, "per token at aligned positions: ")
    parser.add_argument(
        "--piece-len",
        type=positive_int,
        help="tokens per streamed piece, a multiple of the model's segment/chunk length "
        "(default: the smallest such multiple >= 2048)",
    )
    parser.add_argument(
        "--batch-tokens", type=positive_int, default=32768, help="tokens per batch and piece"
    )
    add_invalid(parser)
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.atomic import check_output_parent
    from pipeline.checkpoints import default_rc_average, load_backbone
    from pipeline.device import resolve_device
    from pipeline.embed.embedder import Embedder, embed_file
    from pipeline.errors import PipelineError

    if args.stride is not None and args.window is None:
        raise PipelineError("--stride needs --window")
    check_output_parent(args.output)
    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    rc_average = args.rc_average if args.rc_average is not None else default_rc_average(directory)
    try:
        embedder = Embedder(
            lm,
            device,
            pooling=args.pooling,
            piece_len=args.piece_len,
            rc_average=rc_average,
            batch_tokens=args.batch_tokens,
        )
    except ValueError as err:
        raise PipelineError(f"--piece-len: {err}") from None
    embed_file(
        args.input,
        args.output,
        embedder,
        checkpoint=directory,
        reference=args.reference,
        genome=args.genome,
        window=args.window,
        stride=args.stride,
        dtype=args.dtype,
        per_token=args.per_token,
        invalid=args.invalid,
    )
    return 0
