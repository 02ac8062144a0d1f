"""`titans-dna finetune` and `titans-dna predict` end to end on a slice of a real GUE task."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.finetune.train as train_module
from pipeline.cli import main
from titans_dna.models.classifier import TitansForSequenceClassification

from .conftest import write_split

METRIC_KEYS = {"mcc", "accuracy", "f1", "auroc"}


def finetune(task: Path, out: Path, checkpoint: str, *extra: str) -> int:
    args = ["finetune", "--task", str(task), "--checkpoint", checkpoint, "--out", str(out)]
    return main([*args, "--epochs", "1", "--batch-size", "32", "--device", "cpu", *extra])


def check_metrics(out: Path, train_examples: int) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert set(metrics[split]) == METRIC_KEYS
        assert -1 <= metrics[split]["mcc"] <= 1
        assert 0 <= metrics[split]["accuracy"] <= 1 and 0 <= metrics[split]["f1"] <= 1
        assert 0 <= metrics[split]["auroc"] <= 1
    assert metrics["train_examples"] == train_examples
    assert metrics["wall_seconds"] > metrics["dev_scoring_seconds"] > 0
    assert metrics["history"] and metrics["steps"] >= 1
    return metrics


def no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_from_scratch_writes_metrics_model_and_labels(gue_slice, tmp_path: Path) -> None:
    task = gue_slice("prom_core_all", train=96, dev=32, test=32)
    out = tmp_path / "run"
    overrides = ("--set", "d_model=32", "--set", "variant=mag")
    assert finetune(task, out, "none", "--preset", "tiny", *overrides, "--max-minutes", "5") == 0
    metrics = check_metrics(out, 96)
    assert metrics["checkpoint"] is None and metrics["preset"] == "tiny"
    assert metrics["model_config"]["d_model"] == 32 and metrics["model_config"]["variant"] == "mag"
    label_map = json.loads((out / "label_map.json").read_text())
    assert label_map["label2id"] == {"0": 0, "1": 1}
    model = TitansForSequenceClassification.from_pretrained(out / "model")
    assert model.label_names == ["0", "1"] and model.config.d_model == 32
    assert (out / "model" / "tokenizer.json").is_file()
    assert no_leftovers(tmp_path) == []


def test_from_pretrained_then_predict(gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path) -> None:
    task = gue_slice("mouse_0", train=128, dev=32, test=32)
    out = tmp_path / "run"
    assert finetune(task, out, str(tiny_lm_checkpoint), "--pooling", "attention") == 0
    metrics = check_metrics(out, 128)
    assert metrics["checkpoint"] == str(tiny_lm_checkpoint) and metrics["pooling"] == "attention"
    model = TitansForSequenceClassification.from_pretrained(out / "model")
    assert model.config.d_model == 32 and model.pooling_kind == "attention"

    predictions = tmp_path / "predictions.csv"
    assert (
        main(["predict", str(task / "test.csv"), "--checkpoint", str(out), "-o", str(predictions)])
        == 0
    )
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    assert list(rows[0]) == ["id", "length", "predicted", "p_0", "p_1", "label"]
    probs = np.array([[float(r["p_0"]), float(r["p_1"])] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The written probabilities reproduce the test accuracy recorded in metrics.json.
    accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    # finetune's own test predictions: the same probabilities, with the true labels
    with open(out / "test_predictions.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0]) == ["id", "label", "p_0", "p_1"]
    assert [r["id"] for r in written] == [r["id"] for r in rows]
    assert [r["label"] for r in written] == [r["label"] for r in rows]
    own = np.array([[float(r["p_0"]), float(r["p_1"])] for r in written])
    np.testing.assert_allclose(own, probs, atol=1e-5)


def test_binary_models_keep_the_dev_threshold_and_predict_with_it(
    gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    task = gue_slice("prom_core_all", train=96, dev=48, test=32)
    tuned, plain = tmp_path / "tuned", tmp_path / "plain"
    assert finetune(task, tuned, str(tiny_lm_checkpoint), "--no-probe-candidate",
                    "--tune-threshold") == 0  # fmt: skip
    assert finetune(task, plain, str(tiny_lm_checkpoint), "--no-probe-candidate") == 0
    summary = metrics_of(tuned)["decision_threshold"]
    assert 0 < summary["threshold"] < 1 and summary["dev_mcc"] >= summary["dev_mcc_argmax"]
    # the same run and seed: only the decision rule differs
    assert summary["test_mcc_argmax"] == metrics_of(plain)["test"]["mcc"]
    assert metrics_of(plain)["decision_threshold"] is None
    model = TitansForSequenceClassification.from_pretrained(tuned / "model")
    assert model.decision_threshold == pytest.approx(summary["threshold"], abs=1e-6)
    assert (
        TitansForSequenceClassification.from_pretrained(plain / "model").decision_threshold is None
    )

    def predict(*extra: str) -> list[dict]:
        path = tmp_path / f"predictions{len(extra)}.csv"
        args = ["predict", str(task / "test.csv"), "--model", str(tuned), "-o", str(path)]
        assert main([*args, *extra]) == 0
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))

    saved = predict()
    # a threshold at the median calls half the examples positive, whatever arg-max would do
    median = float(np.median([float(r["p_1"]) for r in saved]))
    for threshold, rows in ((model.decision_threshold, saved),
                            (median, predict("--threshold", repr(median)))):  # fmt: skip
        called = [r["predicted"] == "1" for r in rows]
        assert called == [float(r["p_1"]) >= threshold - 1e-6 for r in rows]


def test_metrics_identify_the_task_and_the_backbone(
    gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    task = gue_slice("prom_core_all", train=64, dev=16, test=16)
    out = tmp_path / "run"
    assert finetune(task, out, str(tiny_lm_checkpoint)) == 0
    metrics = metrics_of(out)
    for split in ("train", "dev", "test"):
        recorded = metrics["task_files"][split]
        path = task / recorded["file"]
        assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), split
    weights = tiny_lm_checkpoint / "model.safetensors"
    if not weights.is_file():
        weights = tiny_lm_checkpoint / "model" / "model.safetensors"
    assert metrics["checkpoint_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_frozen_backbone_keeps_the_lm_weights(
    gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    task = gue_slice("prom_core_all", train=64, dev=16, test=16)
    out = tmp_path / "run"
    assert finetune(task, out, str(tiny_lm_checkpoint), "--freeze-backbone") == 0
    tuned = TitansForSequenceClassification.from_pretrained(out / "model")
    base = TitansForSequenceClassification.from_pretrained_backbone(tiny_lm_checkpoint, 2)
    for name, value in base.lm.state_dict().items():
        torch.testing.assert_close(tuned.lm.state_dict()[name], value, msg=name)
    assert metrics_of(out)["trainable_parameters"] < 2000


def metrics_of(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_mixed_lengths_and_longer_than_context_sequences_work(
    tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)

    def rows(n: int) -> list[tuple[str, str]]:
        lengths = rng.integers(20, 300, size=n)
        return [
            ("".join(rng.choice(list("ACGT"), size=k)), str(i % 2)) for i, k in enumerate(lengths)
        ]

    task = tmp_path / "task"
    task.mkdir()
    write_split(task / "train.csv", rows(48))
    # A test sequence 100 times the model's 32-token segment streams through the state.
    long_row = ("".join(rng.choice(list("ACGT"), size=3200)), "1")
    write_split(task / "test.csv", [*rows(8), long_row])
    out = tmp_path / "run"
    assert finetune(task, out, str(tiny_lm_checkpoint)) == 0
    metrics = metrics_of(out)
    assert metrics["test_examples"] == 9 and metrics["dev_source"].endswith("seed 0)")


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("titans-dna "), err
    for needle in needles:
        assert needle in err[0], err


@pytest.mark.parametrize(
    ("train", "test", "needle"),
    [
        ("sequence\nACGT\nACGA\n", None, "no 'label' column"),
        ("sequence,label\nACGT,yes\nACGA,\n", None, "empty label"),
        ("sequence,label\nACGT,1\nACGA,1\n", None, "single class"),
        ("sequence,label\nACGT,0\nACGA,1\n", "sequence,label\nACGT,7\n", "never appears"),
    ],
)
def test_bad_tasks_exit_2_with_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture, train: str, test: str | None, needle: str
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.csv").write_text(train)
    if test:
        (task / "test.csv").write_text(test)
    assert finetune(task, tmp_path / "run", "none") == 3
    one_line_error(capsys, needle)
    assert not (tmp_path / "run").exists() and no_leftovers(tmp_path) == []


def test_classifier_is_refused_as_a_pretrained_checkpoint(
    gue_slice, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from .conftest import tiny_config

    TitansForSequenceClassification(tiny_config(), 2).save_pretrained(tmp_path / "clf")
    task = gue_slice("prom_core_all", train=20, dev=0, test=0)
    assert finetune(task, tmp_path / "run", str(tmp_path / "clf")) == 3
    one_line_error(capsys, "is a fine-tuned classifier", "pretrained")
    assert not (tmp_path / "run").exists()


def test_pretrained_lm_is_refused_by_predict(
    tiny_lm_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "in.fa").write_text(">s\nACGT\n")
    out = tmp_path / "p.csv"
    code = main(
        [
            "predict",
            str(tmp_path / "in.fa"),
            "--checkpoint",
            str(tiny_lm_checkpoint),
            "-o",
            str(out),
        ]
    )
    assert code == 3
    one_line_error(capsys, "is a pretrained language model", "fine-tune")
    assert not out.exists()


def test_output_in_a_missing_folder_fails_before_any_work(
    gue_slice, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    task = gue_slice("prom_core_all", train=20, dev=0, test=0)
    assert finetune(task, tmp_path / "missing" / "run", "none") == 3
    one_line_error(capsys, "does not exist")


def test_dev_scoring_stays_under_a_tenth_of_the_run() -> None:
    """Another 2 s scoring after 6 s of it is affordable once the run will have lasted 100 s."""
    from types import SimpleNamespace

    for elapsed, due in ((97.9, False), (98.0, True)):
        run = SimpleNamespace(eval_seconds=6.0, last_eval_seconds=2.0, elapsed=lambda e=elapsed: e)
        assert train_module._scoring_affordable(run) is due
    assert train_module.EVAL_SHARE <= 0.08  # the final scoring comes on top


def test_schedule_warms_up_then_decays() -> None:
    from pipeline.optim import warmup_then_decay

    def lr_factor(done, warmup, shape):
        return warmup_then_decay(done, warmup, shape=shape)

    assert lr_factor(0.025, 0.05, "cosine") == pytest.approx(0.5)
    assert lr_factor(0.05, 0.05, "cosine") == pytest.approx(1.0)
    assert lr_factor(0.525, 0.05, "cosine") == pytest.approx(0.5)
    assert lr_factor(1.0, 0.05, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0.525, 0.05, "linear") == pytest.approx(0.5)


def test_the_schedule_counts_from_the_first_training_step() -> None:
    """Probes that took 80 s of a 2-minute budget leave the first step at the warmup's start
    and the middle of the remaining training time at the middle of the schedule."""
    from types import SimpleNamespace

    options = train_module.FinetuneOptions(lr=1e-3, warmup=0.05, max_minutes=2)
    run = SimpleNamespace(step=0, planned_steps=10_000, training_from=80.0, options=options)
    run.deadline, run.elapsed = (lambda: 110.0), (lambda: 80.0)
    run.progress = lambda: train_module.TrainingRun.progress(run)
    assert train_module.TrainingRun.learning_rate(run) < 1e-5
    run.elapsed = lambda: 95.0
    assert run.progress() == pytest.approx(0.5)


def test_the_budget_stops_training(gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path) -> None:
    task = gue_slice("prom_core_all", train=64, dev=16, test=16)
    out = tmp_path / "run"
    assert (
        finetune(
            task,
            out,
            str(tiny_lm_checkpoint),
            "--epochs",
            "100000",
            "--max-minutes",
            "0.05",
            "--patience",
            "100000",
        )
        == 0
    )
    metrics = metrics_of(out)
    assert metrics["stopped_by"] == "budget"
    assert metrics["wall_seconds"] < 120  # loose: shared CI machines are slow; 3 s budget


def test_test_labels_never_influence_training_or_selection(
    gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dev scoring is scheduled by wall-clock time (its cost against the training time): fix the
    # schedule, so that the two runs differ only in their test labels, not in a busy machine
    monkeypatch.setattr(train_module, "_scoring_affordable", lambda run: True)
    monkeypatch.setattr(train_module, "_interim_eval_due", lambda run: False)
    task = gue_slice("mouse_0", train=64, dev=32, test=32)
    runs = []
    for flip in (False, True):
        if flip:
            rows = (task / "test.csv").read_text().splitlines()
            flipped = [r[:-1] + str(1 - int(r[-1])) for r in rows[1:]]
            (task / "test.csv").write_text("\n".join([rows[0], *flipped]) + "\n")
        out = tmp_path / f"run{int(flip)}"
        assert finetune(task, out, str(tiny_lm_checkpoint), "--epochs", "3") == 0
        runs.append(metrics_of(out))
    assert runs[0]["dev"] == runs[1]["dev"] and runs[0]["best_step"] == runs[1]["best_step"]
    assert runs[0]["test"]["accuracy"] == pytest.approx(1 - runs[1]["test"]["accuracy"])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--set", "colour=blue"), "unknown TitansConfig field(s): colour"),
        (("--set", "d_model"), "expected KEY=VALUE"),
    ],
)
def test_bad_model_overrides(
    gue_slice, tmp_path: Path, capsys: pytest.CaptureFixture, extra: tuple[str, ...], needle: str
) -> None:
    task = gue_slice("prom_core_all", train=20, dev=0, test=0)
    assert finetune(task, tmp_path / "run", "none", *extra) == 3
    one_line_error(capsys, needle)


def test_probe_candidate_is_scored_first(
    gue_slice, tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    task = gue_slice("prom_core_all", train=64, dev=16, test=16)
    probed, plain = tmp_path / "probe", tmp_path / "plain"
    assert finetune(task, probed, str(tiny_lm_checkpoint)) == 0
    assert (
        finetune(task, plain, str(tiny_lm_checkpoint), "--no-probe-candidate", "--no-strand-check")
        == 0
    )
    metrics = metrics_of(probed)
    first = metrics["history"][0]
    assert first["step"] == 0 and first["train_loss"] is None
    assert metrics["probe_candidate"]["examples"] == 64
    assert metrics["probe_candidate"]["dev"] == first["dev"]
    assert set(metrics["strand_check"]) == {"forward_auroc", "symmetric_auroc", "oriented"}
    assert (
        metrics_of(plain)["probe_candidate"] is None and metrics_of(plain)["strand_check"] is None
    )
    assert metrics_of(plain)["history"][0]["step"] > 0


def oriented_rows(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """Label 1: a reverse-palindromic motif at the 3' end; label 0: at the 5' end."""
    motif, rows = "GAATTC" * 4, []
    for i in range(n):
        background = "".join(rng.choice(list("ACGT"), int(rng.integers(40, 90)) - len(motif)))
        rows.append((background + motif if i % 2 else motif + background, str(i % 2)))
    return rows


def test_oriented_task_trains_and_predicts_on_the_given_strand(
    tiny_lm_checkpoint: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    task = tmp_path / "oriented"
    task.mkdir()
    for split, n in (("train", 160), ("dev", 40), ("test", 40)):
        write_split(task / f"{split}.csv", oriented_rows(rng, n))
    out = tmp_path / "run"
    assert finetune(task, out, str(tiny_lm_checkpoint), "--pooling", "last") == 0
    metrics = metrics_of(out)
    assert metrics["strand_check"]["oriented"]
    assert not metrics["options"]["rc_augment"] and not metrics["options"]["rc_average"]
    assert not TitansForSequenceClassification.from_pretrained(out / "model").rc_average

    def predict(*extra: str) -> np.ndarray:
        path = tmp_path / f"predictions{len(extra)}{''.join(extra)}.csv"
        args = ["predict", str(task / "test.csv"), "--model", str(out), "-o", str(path)]
        assert main([*args, *extra]) == 0
        with open(path, newline="") as handle:
            return np.array([float(r["p_1"]) for r in csv.DictReader(handle)])

    as_trained = predict()
    np.testing.assert_array_equal(as_trained, predict("--no-rc-average"))
    assert not np.allclose(as_trained, predict("--rc-average"))
