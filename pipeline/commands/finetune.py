"""Fine-tune a sequence classifier on a labelled task folder.

The task folder holds train, optional dev and optional test splits as GUE-style CSV
(`sequence,label`), FASTA/FASTQ with the label in each header (`>id label=NAME` or `>id|NAME`),
or BED (label in the name column) with --genome. Without dev, a seeded 10% of train is held out.
The model selected on dev MCC is written to OUT/model/ with OUT/label_map.json and
OUT/metrics.json (dev and test MCC, accuracy, macro F1, AUROC); with --tune-threshold a binary
model keeps the decision threshold that maximises its dev MCC. OUT is replaced atomically.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import (
    POOLINGS,
    add_device,
    add_output,
    add_switch,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)

HELP = "fine-tune a classifier on a labelled task (GUE CSV, labelled FASTA, BED)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task folder (train.csv, dev.csv, test.csv)")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="pretrained TitansLM checkpoint (or a pretrain -o folder), or 'none' to train "
        "from scratch with --preset",
    )
    add_output(parser, "output folder (replaced only when an earlier finetune wrote it)")
    parser.add_argument("--genome", help="indexed genome FASTA for a BED task")
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="mean",
        help="token states to one vector: mean over real tokens, the last token, the maximum per "
        "feature, or a learned attention query",
    )
    add_switch(parser, "freeze-backbone", False, "train only the pooling and head")
    add_switch(
        parser, "probe-candidate", True,
        "score the frozen backbone with a linear-probe head on dev as the first candidate of "
        "model selection",
    )  # fmt: skip
    add_switch(parser, "rc-augment", True, "train on random reverse complements")
    add_switch(parser, "rc-average", True, "average both strands' probabilities when scoring")
    add_switch(
        parser, "strand-check", True,
        "turn reverse-complement augmentation and averaging off when a linear probe on train "
        "shows that the labels depend on orientation",
    )  # fmt: skip
    add_switch(
        parser, "tune-threshold", False,
        "two labels: predict the second from the probability that maximises the selected "
        "model's dev MCC (saved with it), not from 0.5; on five GUE tasks it did not carry over "
        "to test on average",
    )  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, default=10, help="maximum epochs")
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        help="wall-clock budget of the run: training stops in time for the final dev and test "
        "scoring, and the learning rate decays to zero by then",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="training batch size")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    parser.add_argument(
        "--weight-decay", type=non_negative_float, default=0.01, help="AdamW weight decay"
    )
    parser.add_argument(
        "--warmup", type=fraction, default=0.05, help="warmup fraction of the schedule, in [0, 1)"
    )
    parser.add_argument("--schedule", choices=("cosine", "linear"), default="cosine", help="decay")
    parser.add_argument(
        "--patience", type=positive_int, default=4, help="dev evaluations without improvement"
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
    add_device(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (dev hold-out, batches)")


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    import torch

    from pipeline.atomic import atomic_dir, check_output_parent
    from pipeline.checkpoints import (
        checkpoint_dir,
        new_classifier,
        parse_overrides,
        weights_sha256,
    )
    from pipeline.device import resolve_device
    from pipeline.finetune.train import FinetuneOptions, finetune, save_outputs
    from pipeline.io.tasks import load_task, split_checksums

    log = logging.getLogger("pipeline")
    out = check_output_parent(args.output)
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
        tune_threshold=args.tune_threshold,
        patience=args.patience,
        seed=args.seed,
    )
    backbone = None if args.checkpoint == "none" else checkpoint_dir(args.checkpoint)
    with atomic_dir(out) as tmp:
        metrics, test_probabilities = finetune(model, task, options, device)
        metrics.update(
            task=str(task.path),
            task_files=split_checksums(task),
            labels=task.label_names,
            checkpoint=None if args.checkpoint == "none" else str(args.checkpoint),
            checkpoint_sha256=weights_sha256(backbone) if backbone else None,
            preset=args.preset if args.checkpoint == "none" else None,
            overrides=parse_overrides(args.sets),
            pooling=args.pooling,
            device=str(device),
            model_config=model.config.to_dict(),
        )
        save_outputs(tmp, model, task, metrics, test_probabilities)
    test = metrics["test"]
    log.info(
        "dev %s; test %s; written to %s",
        json.dumps(metrics["dev"]),
        "none" if test is None else json.dumps(test),
        out,
    )
    return 0
