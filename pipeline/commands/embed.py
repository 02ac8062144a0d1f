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

HELP = "embed sequences (FASTA/FASTQ/BAM/CRAM/BED/CSV) into HDF5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="sequences to embed")
    parser.add_argument(
        "--checkpoint", required=True, help="TitansLM or fine-tuned classifier checkpoint folder"
    )
    parser.add_argument("-o", "--output", required=True, help="output HDF5 file")
    parser.add_argument("--reference", help="reference FASTA for CRAM input")
    parser.add_argument("--genome", help="indexed genome FASTA for BED input")
    parser.add_argument(
        "--pooling", choices=("mean", "last", "max"), default="mean", help="pooling over tokens"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="stored precision"
    )
    parser.add_argument(
        "--per-token", action="store_true", help="also store every token's hidden state"
    )
    parser.add_argument(
        "--window", type=_positive_int, help="cut records into windows of this many bases"
    )
    parser.add_argument("--stride", type=_positive_int, help="window step; None = --window")
    parser.add_argument(
        "--rc-average",
        action="store_true",
        help="average with the reverse-complement strand (per token: aligned positions)",
    )
    parser.add_argument(
        "--piece-len",
        type=_positive_int,
        help="tokens per streamed piece, a multiple of the model's segment/chunk length; "
        "None = the smallest such multiple >= 2048",
    )
    parser.add_argument(
        "--batch-tokens", type=_positive_int, default=32768, help="tokens per batch and piece"
    )
    parser.add_argument(
        "--invalid",
        choices=("error", "n"),
        default="error",
        help="bytes that are not nucleotide codes: fail, or read them as N",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    import datetime

    from pipeline import __version__
    from pipeline.atomic import check_output_parent
    from pipeline.embed import Embedder, embed_file
    from pipeline.embed_store import model_attrs
    from pipeline.errors import PipelineError
    from pipeline.modelio import load_backbone, resolve_device, weights_sha256
    from titans_dna.tokenizer import DNATokenizer

    if args.stride is not None and args.window is None:
        raise PipelineError("--stride needs --window")
    check_output_parent(args.output)
    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    try:
        embedder = Embedder(
            lm,
            device,
            pooling=args.pooling,
            piece_len=args.piece_len,
            rc_average=args.rc_average,
            batch_tokens=args.batch_tokens,
        )
    except ValueError as err:
        raise PipelineError(f"--piece-len: {err}") from None
    attrs = model_attrs(
        lm.config.to_dict(), directory, weights_sha256(directory), DNATokenizer().version
    )
    attrs.update(
        pooling=args.pooling,
        layer="final",
        package_version=__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        input=str(args.input),
        rc_average=args.rc_average,
        piece_len=embedder.piece_len,
        window=args.window or 0,
        stride=(args.stride or args.window or 0),
    )
    embed_file(
        args.input,
        args.output,
        embedder,
        attrs=attrs,
        reference=args.reference,
        genome=args.genome,
        window=args.window,
        stride=args.stride,
        dtype=args.dtype,
        per_token=args.per_token,
        invalid=args.invalid,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
