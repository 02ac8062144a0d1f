"""Fine-tune a sequence classifier on a labelled task folder.

The task folder holds train, optional dev and optional test splits as GUE-style CSV
(`sequence,label`), FASTA/FASTQ with the label in each header (`>id label=NAME` or `>id|NAME`),
or BED (label in the name column) with --genome. Without dev, a seeded 10% of train is held out.
The model selected on dev MCC is written to OUT/model/ with OUT/label_map.json and
OUT/metrics.json (dev and test MCC, accuracy, macro F1, AUROC). OUT is replaced atomically.
"""

from __future__ import annotations

import argparse

HELP = "fine-tune a classifier on a labelled task (GUE CSV, labelled FASTA, BED)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task folder (train.csv, dev.csv, test.csv)")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="pretrained TitansLM checkpoint (or a pretrain --out folder), or 'none' to train "
        "from scratch with --preset",
    )
    parser.add_argument("--out", required=True, help="output folder (replaced atomically)")
    parser.add_argument("--genome", help="indexed genome FASTA for a BED task")
    parser.add_argument(
        "--pooling",
        choices=("mean", "last", "attention"),
        default="mean",
        help="token states to one vector: mean over real tokens, the last token, or a learned "
        "attention query",
    )
    parser.add_argument(
        "--freeze-backbone", action="store_true", help="train only the pooling and head"
    )
    parser.add_argument(
        "--no-probe-candidate",
        dest="probe_candidate",
        action="store_false",
        help="do not score the frozen backbone with a linear-probe head on dev as the first "
        "candidate of model selection",
    )
    parser.add_argument(
        "--no-rc-augment",
        dest="rc_augment",
        action="store_false",
        help="do not train on random reverse complements (augmentation is on by default)",
    )
    parser.add_argument(
        "--no-rc-average",
        dest="rc_average",
        action="store_false",
        help="score the forward strand only (default: average both strands' probabilities)",
    )
    parser.add_argument(
        "--no-strand-check",
        dest="strand_check",
        action="store_false",
        help="keep reverse-complement augmentation and averaging even when a linear probe on "
        "train shows that the labels depend on orientation (by default they are then turned off)",
    )
    parser.add_argument("--epochs", type=_positive_int, default=10, help="maximum epochs")
    parser.add_argument(
        "--max-minutes",
        type=_positive_float,
        help="wall-clock budget of the run: training stops in time for the final dev and test "
        "scoring, and the learning rate decays to zero by then",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="training batch size")
    parser.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument(
        "--warmup", type=float, default=0.05, help="warmup fraction of the schedule"
    )
    parser.add_argument("--schedule", choices=("cosine", "linear"), default="cosine", help="decay")
    parser.add_argument(
        "--patience", type=_positive_int, default=4, help="dev evaluations without improvement"
    )
    parser.add_argument(
        "--preset", default="tiny", help="model size when --checkpoint none (tiny, small, base)"
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --checkpoint none: override a model field of the preset (repeatable), "
        "e.g. variant=mag or d_model=32",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="random seed (dev hold-out, batches)")


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    import torch

    from pipeline.atomic import atomic_dir, check_output_parent
    from pipeline.finetune import FinetuneOptions, finetune, save_outputs
    from pipeline.modelio import new_classifier, parse_overrides, resolve_device
    from pipeline.tasks import load_task

    log = logging.getLogger("titans_dna")
    out = check_output_parent(args.out)
    device = resolve_device(args.device)
    task = load_task(args.task, genome=args.genome, seed=args.seed)
    torch.manual_seed(args.seed)  # the new head's initial weights
    model = new_classifier(
        args.checkpoint,
        num_labels=task.num_labels,
        pooling=args.pooling,
        label_names=task.label_names,
        preset=args.preset,
        overrides=parse_overrides(args.sets),
    )
    options = FinetuneOptions(
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        schedule=args.schedule,
        rc_augment=args.rc_augment,
        rc_average=args.rc_average,
        strand_check=args.strand_check,
        freeze_backbone=args.freeze_backbone,
        probe_candidate=args.probe_candidate,
        patience=args.patience,
        seed=args.seed,
    )
    with atomic_dir(out) as tmp:
        metrics = finetune(model, task, options, device)
        metrics.update(
            task=str(task.path),
            labels=task.label_names,
            checkpoint=None if args.checkpoint == "none" else str(args.checkpoint),
            preset=args.preset if args.checkpoint == "none" else None,
            overrides=parse_overrides(args.sets),
            pooling=args.pooling,
            device=str(device),
            model_config=model.config.to_dict(),
        )
        save_outputs(tmp, model, task, metrics)
    test = metrics["test"]
    log.info(
        "dev %s; test %s; written to %s",
        json.dumps(metrics["dev"]),
        "none" if test is None else json.dumps(test),
        out,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value
