"""Class probabilities of a fine-tuned classifier for every sequence of INPUT.

INPUT is FASTA/FASTQ, BAM/CRAM, BED (--genome) or a CSV with a `sequence` column. The output
CSV has one row per sequence: id, length, predicted label, one probability column per class
(`p_<label>`) and, when the input CSV carries labels, the true label. Probabilities average both
strands as the model was fine-tuned to (not for tasks whose labels depend on orientation), unless
--rc-average / --no-rc-average say otherwise. A binary classifier predicts its second label
from the decision threshold chosen on dev when it was fine-tuned, unless --threshold says
otherwise. Written atomically.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import (
    add_checkpoint,
    add_device,
    add_invalid,
    add_rc_average,
    open_unit,
)

HELP = "predict class probabilities with a fine-tuned classifier"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="sequences to classify")
    add_checkpoint(
        parser, "fine-tuned classifier (a finetune output folder or its model/)", "--model"
    )
    parser.add_argument("-o", "--output", required=True, help="output CSV")
    parser.add_argument("--reference", help="reference FASTA for CRAM input")
    parser.add_argument("--genome", help="indexed genome FASTA for BED input")
    add_rc_average(parser)
    parser.add_argument(
        "--threshold",
        type=open_unit,
        help="two labels: probability of the second label from which it is predicted (default: "
        "the model's, chosen on dev by finetune; the more probable label if it has none)",
    )
    add_invalid(parser)
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.atomic import check_output_parent
    from pipeline.checkpoints import load_classifier
    from pipeline.device import resolve_device
    from pipeline.errors import input_error
    from pipeline.finetune.predict import predict_file

    check_output_parent(args.output)
    device = resolve_device(args.device)
    model, _ = load_classifier(args.checkpoint, device)
    if args.threshold is not None:
        try:
            model.decision_threshold = args.threshold
        except ValueError as err:
            raise input_error(args.checkpoint, f"--threshold: {err}") from None
    predict_file(
        model, args.input, args.output, device=device, rc_average=args.rc_average,
        reference=args.reference, genome=args.genome, invalid=args.invalid,
    )  # fmt: skip
    return 0
