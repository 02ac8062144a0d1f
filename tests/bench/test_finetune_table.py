"""bench/finetune.py's table rows: the spread over seeds and the MCC at arg-max beside it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
# loaded under another name: `finetune` is also the tests' package of that name
SPEC = importlib.util.spec_from_file_location("bench_finetune", REPO / "bench" / "finetune.py")
finetune = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(finetune)


def run_metrics(mcc: float, threshold: dict | None) -> dict:
    return {
        "test": {"mcc": mcc, "auroc": 0.8},
        "dev": {"mcc": mcc + 0.1},
        "decision_threshold": threshold,
        "options": {"rc_average": True},
        "best_step": 10,
        "epochs_completed": 2.0,
        "wall_seconds": 60.0,
        "dev_scoring_seconds": 3.0,
    }


def test_a_row_gives_mean_and_spread_over_seeds() -> None:
    runs = [
        run_metrics(0.5, {"threshold": 0.4, "test_mcc_argmax": 0.0}),
        run_metrics(0.7, {"threshold": 0.6, "test_mcc_argmax": 0.2}),
    ]
    row = finetune.row("some_task", "pretrained", runs)
    assert row["seeds"] == 2
    assert row["test MCC"] == "0.600 ± 0.141"  # sample standard deviation
    assert row["test MCC at arg-max"] == "0.100 ± 0.141"  # 0.0 is a value, not a missing one
    assert row["threshold"] == "0.500 ± 0.141"
    assert row["test AUROC"] == "0.800 ± 0.000" and row["best step"] == 10
    assert row["dev scoring %"] == 5.0
    assert row["k-mer LR MCC"] is None  # not a known task's files


def test_one_seed_and_no_threshold() -> None:
    row = finetune.row("some_task", "scratch tiny", [run_metrics(0.3, None)])
    assert row["test MCC"] == 0.3 and row["test MCC at arg-max"] == 0.3
    assert row["threshold"] is None
