"""The report's fine-tuning section: one table of every task beside the zero-shot linear probe, the
spread over fine-tuning seeds (when runs with other seeds are given) and the reference numbers,
then per task how training went (strand decision, probe candidate, best step, stop reason, dev
curve) and the test set's ROC and precision-recall curves and confusion matrix drawn from
finetune's test_predictions.csv."""

from __future__ import annotations

import csv
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import input_error
from pipeline.finetune.train import PREDICTIONS_FILE
from pipeline.report.baselines import reference_for
from pipeline.report.figures import classification_figure, figure_png
from pipeline.report.markup import (
    fmt,
    key_value_table,
    mean_and_spread,
    metrics_table,
    read_json,
)

STOP_REASONS = {
    "budget": "time budget (--max-minutes) spent",
    "epochs": "all epochs done",
    "early_stopping": "dev MCC stopped improving (--patience)",
}


def _identity(metrics: dict) -> tuple | None:
    files = metrics.get("task_files") or {}
    return tuple(sorted((split, entry["sha256"]) for split, entry in files.items())) or None


def finetune_rows(
    folders: Iterable[Path], probes: Sequence[Path] = (), seeds: Sequence[Path] = ()
) -> list[dict]:
    """One row per task folder: test metrics, the zero-shot probe and the runs with other seeds
    of the same task (both matched by its split files) and the reference numbers of a known
    task."""
    runs = [(folder, read_json(folder / "metrics.json")) for folder in folders]
    return _rows(runs, probes, seeds)


def _rows(
    runs: Sequence[tuple[Path, dict]], probes: Sequence[Path], seeds: Sequence[Path] = ()
) -> list[dict]:
    probe_by_task = {}
    for path in probes:
        probe = read_json(path)
        probe_by_task[_identity(probe)] = probe.get("test") or {}
    seed_mccs: dict[tuple | None, list[float]] = {}
    for folder in seeds:
        metrics = read_json(folder / "metrics.json")
        seed_mccs.setdefault(_identity(metrics), []).append((metrics.get("test") or {}).get("mcc"))
    rows = []
    for folder, metrics in runs:
        test, dev = metrics.get("test") or {}, metrics.get("dev") or {}
        reference = reference_for(metrics.get("task_files"))
        identity = _identity(metrics)
        probe = probe_by_task.get(identity, {}) if identity else {}
        spread = {}
        if seeds:
            mccs = [test.get("mcc"), *(seed_mccs.get(identity, []) if identity else [])]
            mccs = [m for m in mccs if m is not None]
            spread = {"seeds": len(mccs), "test MCC over seeds": mean_and_spread(mccs)}
        rows.append(
            {
                "task": folder.name,
                "known as": reference.name if reference else None,
                "test MCC": test.get("mcc"),
                **spread,
                "test AUROC": test.get("auroc"),
                "test accuracy": test.get("accuracy"),
                "test F1": test.get("f1"),
                "dev MCC": dev.get("mcc"),
                "probe MCC": probe.get("mcc"),
                "probe AUROC": probe.get("auroc"),
                "k-mer LR MCC": reference.kmer_mcc if reference else None,
                "k-mer LR AUROC": reference.kmer_auroc if reference else None,
                "DNABERT-2 MCC": reference.dnabert2_mcc if reference else None,
                "train examples": metrics.get("train_examples"),
                "wall time (s)": _whole(metrics.get("wall_seconds")),
            }
        )
    return rows


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def finetune_section(
    folders: Sequence[Path], probes: Sequence[Path] = (), seeds: Sequence[Path] = ()
) -> str:
    runs = [(folder, read_json(folder / "metrics.json")) for folder in folders]
    seed_note = (
        " Over seeds: the same task fine-tuned with seeds 0, 1, ... (mean ± sample standard "
        "deviation of test MCC); the model shown and used is seed 0's."
        if seeds
        else ""
    )
    return (
        "<h2>Fine-tuning</h2>"
        + metrics_table(_rows(runs, probes, seeds))
        + "<p class=note>MCC: Matthews correlation coefficient on the test split. Probe: the "
        "frozen pretrained model's mean-pooled embeddings with a logistic regression (titans-dna "
        "evaluate), the fair comparison with k-mer LR: 3-6-mer counts + logistic regression "
        "(C=0.1), measured on the same splits. DNABERT-2: fine-tuned 117M model as published "
        "(Zhou et al., ICLR 2024). Reference numbers are shown only for a task whose train, dev "
        "and test files are exactly a known task's (by sha256); a dash means not available."
        + seed_note
        + "</p>"
        + "".join(_task_details(folder, metrics) for folder, metrics in runs)
    )


def _task_details(folder: Path, metrics: dict) -> str:
    facts = {
        "strands": _strand_decision(metrics),
        "model kept": _model_kept(metrics),
        "best dev MCC": fmt((metrics.get("dev") or {}).get("mcc")),
        "decision rule": _decision_rule(metrics.get("decision_threshold")),
        "steps trained": fmt(metrics.get("steps")),
        "stopped by": STOP_REASONS.get(metrics.get("stopped_by"), metrics.get("stopped_by")),
        "backbone": metrics.get("checkpoint") or f"none (preset {metrics.get('preset')})",
        "backbone sha256": metrics.get("checkpoint_sha256") or "—",
    }
    labels, probabilities = read_predictions(folder / PREDICTIONS_FILE, metrics.get("labels"))
    image = figure_png(
        classification_figure(
            metrics.get("history") or [],
            labels,
            probabilities,
            metrics.get("labels") or [],
            threshold=(metrics.get("decision_threshold") or {}).get("threshold"),
        )
    )
    return (
        f"<h3>{html.escape(folder.name)}</h3>"
        + key_value_table(facts)
        + f'<img alt="fine-tuning of {html.escape(folder.name)}" '
        f'src="data:image/png;base64,{image}">'
    )


def _strand_decision(metrics: dict) -> str:
    check = metrics.get("strand_check")
    both = (metrics.get("options") or {}).get("rc_average")
    if not check:
        return f"{'both strands' if both else 'given strand'} (no strand check)"
    decision = (
        "given strand only: labels depend on orientation" if check["oriented"] else ("both strands")
    )
    return (
        f"{decision} (probe ROC-AUC {fmt(check['forward_auroc'])} forward, "
        f"{fmt(check['symmetric_auroc'])} strand-symmetric)"
    )


def _decision_rule(summary: dict | None) -> str:
    if summary is None:
        return "the most probable label"
    rule = f"second label from probability {fmt(summary['threshold'])}, chosen on dev"
    scores = f"dev MCC {fmt(summary['dev_mcc'])}, {fmt(summary['dev_mcc_argmax'])} at arg-max"
    if "test_mcc_argmax" in summary:
        scores += f"; test MCC at arg-max {fmt(summary['test_mcc_argmax'])}"
    return f"{rule} ({scores})"


def _model_kept(metrics: dict) -> str:
    best_step = metrics.get("best_step")
    candidate = metrics.get("probe_candidate")
    if candidate is None:
        return f"fine-tuned, step {fmt(best_step)}"
    probe_mcc = fmt((candidate.get("dev") or {}).get("mcc"))
    if best_step == 0:
        return f"the frozen-probe candidate (dev MCC {probe_mcc}): fine-tuning did not beat it"
    return (
        f"fine-tuned, step {fmt(best_step)}: beat the frozen-probe candidate (dev MCC {probe_mcc})"
    )


def read_predictions(
    path: Path, label_names: Sequence[str] | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(label ids [N], class probabilities [N, K]) from a test_predictions.csv, or (None, None)
    when the run had no test split."""
    if not path.is_file():
        return None, None
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        rows = list(reader)
    names = [column.removeprefix("p_") for column in (header or [])[2:]]
    if header is None or header[:2] != ["id", "label"] or not names or not rows:
        raise input_error(path, "expected columns id,label,p_CLASS... and at least one row")
    if label_names and list(label_names) != names:
        raise input_error(path, f"classes {names} differ from metrics.json's {list(label_names)}")
    index = {name: i for i, name in enumerate(names)}
    try:
        labels = np.array([index[row[1]] for row in rows], dtype=np.int64)
        probabilities = np.array([[float(v) for v in row[2:]] for row in rows])
    except (KeyError, ValueError) as error:
        raise input_error(path, f"unreadable row ({error})") from None
    return labels, probabilities
