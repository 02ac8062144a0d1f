"""Class probabilities of a fine-tuned classifier for every sequence of INPUT.

INPUT is FASTA/FASTQ, BAM/CRAM, BED (--genome) or a CSV with a `sequence` column. The output
CSV has one row per sequence: id, length, predicted label, one probability column per class
(`p_<label>`) and, when the input CSV carries labels, the true label. Probabilities average both
strands as the model was fine-tuned to (not for tasks whose labels depend on orientation), unless
--rc-average / --no-rc-average say otherwise. Written atomically.
"""

from __future__ import annotations

import argparse

HELP = "predict class probabilities with a fine-tuned classifier"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="sequences to classify")
    parser.add_argument(
        "--model", required=True, help="fine-tuned classifier (finetune --out folder or its model/)"
    )
    parser.add_argument("-o", "--output", required=True, help="output CSV")
    parser.add_argument("--reference", help="reference FASTA for CRAM input")
    parser.add_argument("--genome", help="indexed genome FASTA for BED input")
    parser.add_argument(
        "--rc-average",
        action=argparse.BooleanOptionalAction,
        help="average both strands' probabilities, or score the forward strand only "
        "(default: as the model was fine-tuned)",
    )
    parser.add_argument(
        "--invalid",
        choices=("error", "n"),
        default="error",
        help="bytes that are not nucleotide codes: fail, or read them as N",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    import csv
    import logging

    from pipeline.atomic import atomic_file, check_output_parent
    from pipeline.classify import predict_proba
    from pipeline.inputs import blocks, read_items
    from pipeline.modelio import load_classifier, resolve_device

    check_output_parent(args.output)
    device = resolve_device(args.device)
    model, _ = load_classifier(args.model, device)
    rc_average = model.rc_average if args.rc_average is None else args.rc_average
    items = read_items(
        args.input, reference=args.reference, genome=args.genome, invalid=args.invalid
    )
    names, count = model.label_names, 0
    with atomic_file(args.output) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        for block in blocks(items):
            if count == 0:  # the first block decides whether a true-label column is written
                with_labels = any(item.label is not None for item in block)
                header = ["id", "length", "predicted"] + [f"p_{name}" for name in names]
                writer.writerow(header + (["label"] if with_labels else []))
            probabilities = predict_proba(
                model, [item.tokens for item in block], device=device, rc_average=rc_average
            )
            for item, probs in zip(block, probabilities, strict=True):
                row = [item.id, len(item.tokens), names[int(probs.argmax())]]
                row += [f"{p:.6f}" for p in probs]
                writer.writerow(row + ([item.label or ""] if with_labels else []))
            count += len(block)
    logging.getLogger("titans_dna").info("wrote %d predictions to %s", count, args.output)
    return 0
