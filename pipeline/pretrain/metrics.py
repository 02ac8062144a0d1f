"""Training metrics: OUT/metrics.jsonl and OUT/metrics.csv (one row per log event), OUT/curves.png.

A resumed run first drops the rows written after its checkpoint, so the files always describe
one continuous run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_file

COLUMNS = (
    "step",
    "tokens",
    "context",
    "batch_size",
    "lr",
    "train_loss",
    "grad_norm",
    "tokens_per_s",
    "elapsed_s",
    "val_loss",
    "val_bits_per_base",
)
JSONL, CSV, CURVES = "metrics.jsonl", "metrics.csv", "curves.png"


class MetricsLog:
    """Appends rows to OUT/metrics.jsonl and OUT/metrics.csv (rank 0 only)."""

    def __init__(self, out: Path, *, resume_step: int | None):
        self.out = out
        self.rows = [
            r for r in read_rows(out) if resume_step is not None and r["step"] <= resume_step
        ]
        self.rewrite()

    def rewrite(self) -> None:
        """Write both files from `rows` (atomically)."""
        with atomic_file(self.out / JSONL) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        with atomic_file(self.out / CSV) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_csv_row(r) for r in self.rows)

    def append(self, row: dict[str, Any]) -> None:
        """Write one row (keys from COLUMNS; missing ones are empty in the CSV)."""
        self.rows.append(row)
        with open(self.out / JSONL, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        with open(self.out / CSV, "a", newline="") as handle:
            csv.DictWriter(handle, COLUMNS, extrasaction="ignore").writerow(_csv_row(row))


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Rows of OUT/metrics.jsonl (a torn last line from a killed run is dropped)."""
    path = out / JSONL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: ("" if row.get(k) is None else row[k]) for k in COLUMNS}


def plot_curves(
    rows: list[dict[str, Any]], path: Path, baseline_bits: float | None, baseline_label: str
) -> None:
    """The report's pretraining figure (`report_figures.pretraining_curves`), written
    atomically as a PNG."""
    from pipeline.report.figures import pretraining_curves

    baselines = {baseline_label: baseline_bits} if baseline_bits is not None else {}
    figure = pretraining_curves(rows, baselines)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
