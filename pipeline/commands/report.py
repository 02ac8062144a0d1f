"""Write the run report: one self-contained HTML file.

It holds the pretraining loss and bits-per-base curves, the fine-tuning metrics beside a k-mer
baseline and published DNABERT-2 numbers, a PCA map of window embeddings along the genome, the
long-context measurements (context curve, planted-repeat recall), and the provenance
(configuration, package versions, sha256 of inputs and checkpoint). Figures are embedded as
PNG, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli_options import add_output

HELP = "write the HTML run report (curves, metrics table, embedding map, provenance)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrain", type=Path, metavar="DIR", help="output folder of pretrain")
    parser.add_argument(
        "--finetune",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="output folders of finetune, one per task (the folder name is the task name)",
    )
    parser.add_argument(
        "--finetune-seeds",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="finetune output folders of the same tasks with other seeds (matched by their "
        "split files): the table adds the test MCC's mean and spread over seeds",
    )
    parser.add_argument(
        "--probes",
        type=Path,
        nargs="+",
        default=[],
        metavar="JSON",
        help="outputs of titans-dna evaluate (zero-shot linear probes), shown beside fine-tuning "
        "runs of the same task",
    )
    parser.add_argument(
        "--embeddings", type=Path, nargs="+", default=[], metavar="H5", help="embed outputs"
    )
    parser.add_argument(
        "--long-context", type=Path, metavar="JSON", help="output of titans-dna long-context"
    )
    parser.add_argument(
        "--variants", type=Path, nargs="+", default=[], metavar="VCF",
        help="outputs of titans-dna score-variants",
    )  # fmt: skip
    parser.add_argument("--config", type=Path, help="workflow configuration to record")
    parser.add_argument(
        "--benchmarks",
        type=Path,
        metavar="DIR",
        help="folder of Snakemake benchmark files (runtime and peak memory per step)",
    )
    parser.add_argument(
        "--inputs", type=Path, nargs="+", default=[], metavar="FILE", help="input files to checksum"
    )
    parser.add_argument("--title", default="titans-dna run report", help="report title")
    add_output(parser, "output HTML file", type=Path)


def run(args: argparse.Namespace) -> int:
    from pipeline.report.html import ReportInputs, write_report

    spec = ReportInputs(
        pretrain=args.pretrain,
        finetune=args.finetune,
        finetune_seeds=args.finetune_seeds,
        probes=args.probes,
        embeddings=args.embeddings,
        long_context=args.long_context,
        variants=args.variants,
        config=args.config,
        benchmarks=args.benchmarks,
        inputs=args.inputs,
        title=args.title,
    )
    write_report(spec, args.output)
    return 0
