"""Linear-probe evaluation of frozen embeddings on a labelled task.

Mean-pooled embeddings of train + dev train a standardised logistic regression whose C is chosen
by 5-fold cross-validation; test is scored once (ROC-AUC, MCC, accuracy, macro F1). Embeddings
come from --checkpoint (computed here) or from files written by `titans-dna embed` on the task's
split files, given in split order: TRAIN.h5,TEST.h5 or TRAIN.h5,DEV.h5,TEST.h5 (rows are matched
to examples by id). The task needs a test split.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import add_device, add_rc_average

HELP = "linear-probe frozen embeddings on a labelled task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task folder (train, dev, test splits)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--embeddings", help="comma-separated HDF5 files: TRAIN,TEST or TRAIN,DEV,TEST"
    )
    source.add_argument("--checkpoint", help="model checkpoint to embed the task with")
    parser.add_argument("-o", "--output", required=True, help="output metrics.json")
    parser.add_argument("--genome", help="indexed genome FASTA for a BED task")
    add_rc_average(parser, "with --checkpoint: ")
    add_device(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import time

    import numpy as np

    from pipeline.atomic import atomic_file, check_output_parent
    from pipeline.errors import input_error
    from pipeline.io.tasks import load_task, split_checksums
    from pipeline.probe import linear_probe

    start = time.monotonic()
    check_output_parent(args.output)
    task = load_task(args.task, genome=args.genome, seed=args.seed)
    if task.test is None:
        raise input_error(task.path, "no test split (test.csv) to score the probe on")
    if args.embeddings:
        vectors, source = _from_files(args.embeddings, task)
    else:
        vectors, source = _from_checkpoint(args, task)
    train_x = np.concatenate([vectors["train"], vectors["dev"]])
    train_y = np.concatenate([task.train.labels, task.dev.labels])
    result = linear_probe(
        train_x,
        train_y,
        vectors["test"],
        task.test.labels,
        num_labels=task.num_labels,
        seed=args.seed,
    )
    metrics = {
        "test": result["test"],
        "C": result["C"],
        "cv_folds": result["folds"],
        "train_examples": len(train_y),
        "test_examples": len(task.test),
        "embedding_dim": int(train_x.shape[1]),
        "pooling": "mean",
        "protocol": "standardised logistic regression, C by stratified k-fold CV (ROC-AUC) on "
        "train+dev, scored once on test",
        "task": str(task.path),
        "task_files": split_checksums(task),
        "labels": task.label_names,
        "source": source,
        "wall_seconds": round(time.monotonic() - start, 2),
    }
    with atomic_file(args.output) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    logging.getLogger("pipeline").info("linear probe test %s", json.dumps(result["test"]))
    return 0


def _from_files(spec: str, task) -> tuple[dict, dict]:
    from pipeline.embed.store import match_embeddings, read_embeddings
    from pipeline.errors import PipelineError

    paths = [p for p in spec.split(",") if p]
    if len(paths) not in (2, 3):
        raise PipelineError(f"--embeddings needs TRAIN,TEST or TRAIN,DEV,TEST files, got {spec}")
    splits = ("train", "dev", "test") if len(paths) == 3 else ("train", "test")
    files = dict(zip(splits, paths, strict=True))
    loaded = {split: read_embeddings(path) for split, path in files.items()}
    # Without a DEV file the dev examples (held out from train, or dev.csv) are looked up in TRAIN.
    dev_file = loaded.get("dev", loaded["train"])
    vectors = {
        "train": match_embeddings(loaded["train"], task.train),
        "dev": match_embeddings(dev_file, task.dev),
        "test": match_embeddings(loaded["test"], task.test),
    }
    source = {split: str(e.path) for split, e in loaded.items()}
    source["checkpoint_sha256"] = loaded["train"].attrs.get("checkpoint_sha256")
    return vectors, source


def _from_checkpoint(args: argparse.Namespace, task) -> tuple[dict, dict]:
    from pipeline.checkpoints import default_rc_average, load_backbone, weights_sha256
    from pipeline.device import resolve_device
    from pipeline.embed.embedder import Embedder

    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    rc_average = args.rc_average if args.rc_average is not None else default_rc_average(directory)
    embedder = Embedder(lm, device, pooling="mean", rc_average=rc_average)
    vectors = {
        split: embedder.pooled(getattr(task, split).sequences) for split in ("train", "dev", "test")
    }
    source = {"checkpoint": str(directory), "checkpoint_sha256": weights_sha256(directory)}
    return vectors, source
