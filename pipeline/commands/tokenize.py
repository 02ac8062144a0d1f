"""Tokenize genomes, reads or intervals into an HDF5 token store for pretraining.

Each INPUT becomes one group of the store, one dataset of uint8 token ids per contig (or read,
or interval) plus its bit-packed soft-mask (lowercase bases). The format of every input is
found from its content: FASTA or FASTQ (plain, gzip or bgzip), GenBank, EMBL, BAM, SAM, CRAM
(needs --reference) or BED intervals (cut from --genome; '-' strand reverse-complemented).
Ambiguity codes (R Y S W K M B D H V) read as N. Any other byte that is not a nucleotide letter
is an error naming the file, record and offset, unless --invalid n reads it as N. The store is
written under a temporary name and renamed when complete: on any error no output is left.
"""

from __future__ import annotations

import argparse

HELP = "tokenize FASTA/FASTQ/GenBank/EMBL/BAM/CRAM/BED inputs into an HDF5 token store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="sequence files; one store group each"
    )
    parser.add_argument("-o", "--output", required=True, help="token store to write (HDF5)")
    parser.add_argument(
        "--invalid",
        choices=("error", "n"),
        default="error",
        help="bytes that are not nucleotide letters or IUPAC codes: fail, or read them as N",
    )
    parser.add_argument(
        "--reference", help="reference genome FASTA that CRAM inputs decode against"
    )
    parser.add_argument(
        "--genome",
        help="genome FASTA (indexed, or indexable beside it) that BED inputs cut intervals from",
    )


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from pipeline.errors import PipelineError
    from pipeline.tokenstore import TokenStore, write_token_store
    from titans_dna.tokenizer import InvalidSequenceError

    try:
        write_token_store(
            args.inputs,
            args.output,
            invalid=args.invalid,
            reference=args.reference,
            genome=args.genome,
        )
    except InvalidSequenceError as error:
        raise PipelineError(f"{error}; --invalid n reads such bytes as N") from None
    with TokenStore(args.output) as store:
        bases = sum(info.bases for info in store.inputs)
        masked = sum(info.softmasked_bases for info in store.inputs)
        logging.getLogger("pipeline").info(
            "wrote %s: %d inputs, %d contigs, %s bases (%.1f%% soft-masked), %.1f MB",
            args.output,
            len(store.inputs),
            len(store.contigs),
            f"{bases:,}",
            100 * masked / max(bases, 1),
            Path(args.output).stat().st_size / 1e6,
        )
    return 0
