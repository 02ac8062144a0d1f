"""Fine-tuning a sequence classifier on a labelled task, with model selection on dev.

Before training, linear probes on the frozen backbone's features of train (pipeline.finetune.probes)
decide whether the labels depend on the sequences' orientation (if so, reverse-complement
augmentation and strand averaging are off for the run and in the saved model) and give a first
candidate, scored on dev like every later one.
Training: AdamW (no weight decay on biases, norms and embeddings), gradient clipping, linear
warmup then cosine (or linear) decay, length-bucketed batches, reverse-complement augmentation.
The schedule runs on progress = max(step / planned steps, share of the training time used), so
with a wall-clock budget the learning rate still decays to zero by its end. The training time
runs from the first step (after the probes) to the deadline: the budget less the predicted time
of the final dev and test scoring, so the whole run fits the budget.
Dev is scored (MCC, on strand-averaged probabilities unless oriented) after every epoch and, under
a budget, every tenth of it, but never so often that scoring takes more than about a tenth of the
run (EVAL_SHARE); the best dev MCC (ties broken by dev AUROC) selects the saved model and
`patience` evaluations without improvement stop training. For two classes and `tune_threshold`, the
decision threshold that maximises the selected model's dev MCC is then saved with it (MCC depends
on the threshold: a model can rank well and still call too many positives at 0.5). Test is scored
once, with the selected model (and its threshold), and never used for any choice.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.batching import augment_reverse_complement, pad_batch, training_batches
from pipeline.device import autocast
from pipeline.errors import PipelineError
from pipeline.finetune.predict import predict_proba
from pipeline.finetune.probes import ProbeSample, check_orientation, probe_head, sample_features
from pipeline.io.tasks import LabelledSplit, Task
from pipeline.metrics import classification_metrics, mcc_threshold
from pipeline.optim import SCHEDULES, decay_groups, warmup_then_decay
from pipeline.progress import Progress
from titans_dna.models.classifier import (
    TitansForSequenceClassification,
    count_trainable,
    freeze_backbone,
)

log = logging.getLogger("pipeline")
EVALS_PER_BUDGET = 10
# Dev scoring during training stays within this share of the run (the probe candidate's scoring
# included); the final scoring of the last steps adds one more, for under a tenth in all.
EVAL_SHARE = 0.08


@dataclass
class FinetuneOptions:
    """Training hyper-parameters (CLI flags of `titans-dna finetune`)."""

    epochs: int = 10
    max_minutes: float | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    schedule: str = "cosine"
    grad_clip: float = 1.0
    rc_augment: bool = True
    rc_average: bool = True
    strand_check: bool = True
    probe_candidate: bool = True
    tune_threshold: bool = False  # measured on GUE: no gain on average (docs/benchmarks.md)
    freeze_backbone: bool = False
    patience: int = 4
    seed: int = 0


@dataclass
class EvalRecord:
    step: int
    epoch: float
    elapsed: float
    train_loss: float | None  # mean since the previous record; None before any step
    dev: dict[str, float | None] = field(default_factory=dict)


class TrainingRun:
    """The mutable state of one fine-tuning run: model, optimiser, best weights, history."""

    def __init__(
        self,
        model: TitansForSequenceClassification,
        task: Task,
        options: FinetuneOptions,
        device: torch.device,
        rng: np.random.Generator,
        started: float,
    ):
        """`started`: the run's start (time.monotonic()), from which its budget counts."""
        self.model, self.task, self.options, self.device = model, task, options, device
        self.rng = rng
        self.optimizer = torch.optim.AdamW(
            decay_groups(model, options.weight_decay), lr=options.lr, betas=(0.9, 0.98)
        )
        batches_per_epoch = math.ceil(len(task.train) / options.batch_size)
        self.planned_steps = max(1, options.epochs * batches_per_epoch)
        self.budget = options.max_minutes * 60 if options.max_minutes else None
        self.step, self.epoch, self.start = 0, 0.0, started
        self.train_seconds = 0.0  # time inside training steps, to predict the next one
        self.training_from: float | None = None  # elapsed seconds when training began
        self.best_score, self.best_state, self.best_record = (-math.inf, -math.inf), None, None
        self.best_dev_probabilities: np.ndarray | None = None
        self.stale, self.history = 0, []
        self.stop_reason: str | None = None
        self.loss_sum, self.loss_count = 0.0, 0
        self.last_eval_time, self.last_eval_seconds = self.start, 0.0
        self.eval_seconds = 0.0  # all dev scoring so far
        # Seconds per scored token, measured on dev; predicts the final scoring's duration.
        self.score_rate: float | None = None
        self.final_tokens = _tokens(task.dev) + (_tokens(task.test) if task.test else 0)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def deadline(self) -> float | None:
        """Seconds of training allowed: the budget less the predicted final scoring time."""
        if self.budget is None:
            return None
        reserve = (self.score_rate or 0.0) * self.final_tokens
        return max(self.budget - reserve, self.budget / EVALS_PER_BUDGET)

    def progress(self) -> float:
        """The schedule's position: the further of the steps done and the share of the training
        time used, counted from the first step (the probes before it would otherwise spend the
        warmup and much of the decay of a short budget)."""
        fraction = self.step / self.planned_steps
        deadline = self.deadline()
        if deadline and self.training_from is not None:
            training_time = max(deadline - self.training_from, 1e-9)
            fraction = max(fraction, (self.elapsed() - self.training_from) / training_time)
        return min(fraction, 1.0)

    def learning_rate(self) -> float:
        # a first step at a thousandth of the warmup, not at zero
        done = max(self.progress(), 1e-3 * self.options.warmup)
        return self.options.lr * warmup_then_decay(
            done, self.options.warmup, shape=self.options.schedule
        )


def finetune(
    model: TitansForSequenceClassification,
    task: Task,
    options: FinetuneOptions,
    device: torch.device,
) -> tuple[dict, np.ndarray | None]:
    """Train `model` in place (left holding the best-dev weights); return the metrics dict and
    the test set's class probabilities [N_test, K] (None without a test split)."""
    if options.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {options.schedule!r}")
    torch.manual_seed(options.seed)
    if options.freeze_backbone:
        freeze_backbone(model)
    model.to(device)
    started, rng = time.monotonic(), np.random.default_rng(options.seed)
    sample, strands = _check_strands(model, task, options, device, rng)
    if strands is not None and strands["oriented"]:
        options = replace(options, rc_augment=False, rc_average=False)
    model.rc_average = options.rc_average
    run = TrainingRun(model, task, options, device, rng, started)
    probes = {"strand_check": strands, "probe_candidate": None}
    if options.probe_candidate and sample is not None:
        probes["probe_candidate"] = _score_probe_candidate(run, sample)
    log.info(
        "fine-tuning %s trainable parameters on %d examples (%d dev) for up to %d steps%s",
        f"{count_trainable(model):,}",
        len(task.train),
        len(task.dev),
        run.planned_steps,
        f" or {options.max_minutes:g} min" if options.max_minutes else "",
    )
    _train(run)
    model.load_state_dict(run.best_state)
    model.eval()
    if options.tune_threshold and model.num_labels == 2:
        model.decision_threshold = mcc_threshold(task.dev.labels, run.best_dev_probabilities)
    test = test_probabilities = None
    if task.test is not None:
        test_probabilities = _predict(model, task.test, options, device)
        test = _metrics(task.test, test_probabilities, model.decision_threshold)
    metrics = {
        "dev": run.best_record.dev,
        "test": test,
        "wall_seconds": round(run.elapsed(), 2),
        "dev_scoring_seconds": round(run.eval_seconds, 2),
        "train_examples": len(task.train),
        "dev_examples": len(task.dev),
        "test_examples": len(task.test) if task.test is not None else 0,
        "dev_source": task.dev.source,
        "best_step": run.best_record.step,
        "best_epoch": round(run.best_record.epoch, 3),
        "steps": run.step,
        "epochs_completed": round(run.epoch, 3),
        "stopped_by": run.stop_reason,
        "trainable_parameters": count_trainable(model),
        **probes,
        "decision_threshold": _threshold_summary(run, test_probabilities),
        "options": asdict(options),
        "history": [asdict(r) for r in run.history],
    }
    return metrics, test_probabilities


def _check_strands(
    model: TitansForSequenceClassification,
    task: Task,
    options: FinetuneOptions,
    device: torch.device,
    rng: np.random.Generator,
) -> tuple[ProbeSample | None, dict | None]:
    """Frozen features of a sample of train (for the linear probes asked for) and the strand
    check's summary (None when not run): whether the labels depend on orientation."""
    check_strands = options.strand_check and (options.rc_augment or options.rc_average)
    if not (check_strands or options.probe_candidate):
        return None, None
    started = time.monotonic()
    sample = sample_features(model, task.train, device=device, rng=rng)
    if not sample.cross_validatable(model.num_labels):
        log.info("no linear probes: a class has fewer than two training examples")
        return None, None
    check = asdict(check_orientation(sample, model.num_labels)) if check_strands else None
    log.info("strand check took %.1f s", time.monotonic() - started)
    return sample, check


def _score_probe_candidate(run: TrainingRun, sample: ProbeSample) -> dict:
    """Score the backbone with a probe head on dev (a candidate like any checkpoint), then put
    the initial head back for training."""
    head = run.model.head
    weight, bias, summary = probe_head(
        sample, run.model.num_labels, both_strands=run.options.rc_average, rng=run.rng
    )
    initial = head.weight.detach().clone(), head.bias.detach().clone()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
        _evaluate(run)
        head.weight.copy_(initial[0])
        head.bias.copy_(initial[1])
    return {**summary, "dev": run.history[-1].dev}


def _train(run: TrainingRun) -> None:
    options, train = run.options, run.task.train
    lengths = np.array([len(s) for s in train.sequences], dtype=np.int64)
    progress = Progress(run.planned_steps, "fine-tune", "step")
    epochs_done = 0
    run.training_from = run.elapsed()
    while run.stop_reason is None:
        batches = training_batches(lengths, options.batch_size, run.rng)
        for i, batch in enumerate(batches):
            loss = _train_step(run, train, batch)
            run.epoch = epochs_done + (i + 1) / len(batches)
            progress.update(1, loss=f"{loss:.4f}", lr=f"{run.learning_rate():.2e}")
            if _budget_spent(run):
                run.stop_reason = "budget"
                break
            if _interim_eval_due(run):
                _evaluate(run)
                if run.stop_reason:
                    break
        else:
            epochs_done += 1
            if _scoring_affordable(run) or epochs_done >= options.epochs:
                _evaluate(run)
            if run.stop_reason is None and epochs_done >= options.epochs:
                run.stop_reason = "epochs"
    if not run.history or run.history[-1].step != run.step:
        _evaluate(run)
    progress.close(best_dev_mcc=f"{run.best_score[0]:.4f}", stopped_by=run.stop_reason)


def _train_step(run: TrainingRun, train: LabelledSplit, batch: np.ndarray) -> float:
    model, options, device = run.model, run.options, run.device
    started = time.monotonic()
    model.train()
    sequences = [train.sequences[i] for i in batch]
    if options.rc_augment:
        sequences = augment_reverse_complement(sequences, run.rng)
    tokens, mask = pad_batch(sequences)
    labels = torch.from_numpy(train.labels[batch]).to(device)
    for group in run.optimizer.param_groups:
        group["lr"] = run.learning_rate()
    with autocast(device):
        logits = model(tokens.to(device), mask.to(device))
    loss = nn.functional.cross_entropy(logits.float(), labels)
    if not torch.isfinite(loss):
        raise PipelineError(
            f"training diverged: non-finite loss at step {run.step} (try a lower --lr)"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
    run.optimizer.step()
    run.step += 1
    run.train_seconds += time.monotonic() - started
    run.loss_sum += loss.item()
    run.loss_count += 1
    return loss.item()


def _budget_spent(run: TrainingRun) -> bool:
    """True when the next training step would end after the deadline."""
    deadline = run.deadline()
    next_step = run.train_seconds / max(run.step, 1)
    return deadline is not None and run.elapsed() + next_step >= deadline


def _scoring_affordable(run: TrainingRun) -> bool:
    """Scoring dev once more (as long as last time) keeps all of it within EVAL_SHARE of the run."""
    scoring = run.eval_seconds + run.last_eval_seconds
    return scoring <= EVAL_SHARE * (run.elapsed() + run.last_eval_seconds)


def _interim_eval_due(run: TrainingRun) -> bool:
    """Under a budget, evaluate every tenth of it (epochs may be longer than the budget)."""
    if run.budget is None or not _scoring_affordable(run):
        return False
    return time.monotonic() - run.last_eval_time >= run.budget / EVALS_PER_BUDGET


def _tokens(split: LabelledSplit) -> int:
    return sum(len(s) for s in split.sequences)


def _evaluate(run: TrainingRun) -> None:
    """Score dev and keep the weights if best; `patience` stale evaluations stop training."""
    started = time.monotonic()
    probabilities = _predict(run.model, run.task.dev, run.options, run.device)
    dev = _metrics(run.task.dev, probabilities)
    run.last_eval_seconds = time.monotonic() - started
    run.eval_seconds += run.last_eval_seconds
    run.score_rate = run.last_eval_seconds / max(_tokens(run.task.dev), 1)
    loss = round(run.loss_sum / run.loss_count, 5) if run.loss_count else None
    run.loss_sum, run.loss_count = 0.0, 0
    record = EvalRecord(run.step, round(run.epoch, 3), round(run.elapsed(), 2), loss, dev)
    run.history.append(record)
    run.last_eval_time = time.monotonic()
    log.info(
        "step %d epoch %.2f: train loss %s, dev mcc %.4f auroc %s",
        record.step,
        record.epoch,
        "n/a" if loss is None else f"{loss:.4f}",
        dev["mcc"],
        "n/a" if dev["auroc"] is None else f"{dev['auroc']:.4f}",
    )
    # Dev MCC selects; AUROC breaks ties (e.g. between constant predictors, all at MCC 0).
    score = (dev["mcc"], -math.inf if dev["auroc"] is None else dev["auroc"])
    if score > run.best_score:
        run.best_score, run.best_record, run.stale = score, record, 0
        run.best_state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
        run.best_dev_probabilities = probabilities
        return
    run.stale += 1
    if run.stale >= run.options.patience and run.stop_reason is None:
        run.stop_reason = "early_stopping"


def _predict(
    model: TitansForSequenceClassification,
    split: LabelledSplit,
    options: FinetuneOptions,
    device: torch.device,
) -> np.ndarray:
    """Class probabilities [N, K] of a split, scored as the run scores (strands per options)."""
    return predict_proba(model, split.sequences, device=device, rc_average=options.rc_average)


def _metrics(
    split: LabelledSplit, probabilities: np.ndarray, threshold: float | None = None
) -> dict[str, float | None]:
    scores = classification_metrics(split.labels, probabilities, threshold)
    return {k: _round(v) for k, v in scores.items()}


def _threshold_summary(run: TrainingRun, test_probabilities: np.ndarray | None) -> dict | None:
    """The saved decision threshold and the MCCs it gives beside arg-max predictions (None
    without one); `test` and `dev` in the metrics are at the threshold and at arg-max."""
    threshold = run.model.decision_threshold
    if threshold is None:
        return None
    dev, test = run.task.dev, run.task.test
    summary = {
        "threshold": _round(threshold),
        "dev_mcc": _metrics(dev, run.best_dev_probabilities, threshold)["mcc"],
        "dev_mcc_argmax": run.best_record.dev["mcc"],
    }
    if test_probabilities is not None:
        summary["test_mcc_argmax"] = _metrics(test, test_probabilities)["mcc"]
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def save_outputs(
    out_tmp: Path,
    model: TitansForSequenceClassification,
    task: Task,
    metrics: dict,
    test_probabilities: np.ndarray | None,
) -> None:
    """Write model/, label_map.json, metrics.json and (with a test split) test_predictions.csv
    into the (temporary) output folder."""
    import json

    from pipeline.manifest import write_manifest
    from titans_dna.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from titans_dna.tokenizer import DNATokenizer

    model_dir = model.save_pretrained(out_tmp / "model")
    DNATokenizer().save(model_dir / "tokenizer.json")
    write_manifest(model_dir, (CONFIG_FILE, WEIGHTS_FILE, "tokenizer.json"))
    (out_tmp / "label_map.json").write_text(json.dumps(task.label_map(), indent=2) + "\n")
    (out_tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if test_probabilities is not None:  # None exactly when the task has no test split
        write_predictions(out_tmp / PREDICTIONS_FILE, task, task.test, test_probabilities)


PREDICTIONS_FILE = "test_predictions.csv"


def write_predictions(
    path: Path, task: Task, split: LabelledSplit, probabilities: np.ndarray
) -> None:
    """One row per example: id, true label (its name) and the probability of each class
    (columns p_NAME, in label-id order), for ROC and precision-recall curves."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", *(f"p_{name}" for name in task.label_names)])
        for example_id, label, row in zip(split.ids, split.labels, probabilities, strict=True):
            writer.writerow([example_id, task.label_names[label], *(f"{p:.6g}" for p in row)])
