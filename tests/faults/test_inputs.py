"""Silent wrong results made loud: embeddings of other sequences, missing labels."""

from __future__ import annotations

import csv
from pathlib import Path

from .conftest import cli, write_task


def test_evaluate_refuses_embeddings_of_another_train_csv(
    checkpoint: Path, shared_data: Path, tmp_path: Path
) -> None:
    task = write_task(tmp_path / "task", shared_data)
    other = write_task(tmp_path / "other" / "task", shared_data, rows=80)
    with open(other / "train.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(other / "train.csv", "w", newline="") as handle:  # same names, other sequences
        csv.writer(handle).writerows([rows[0], *rows[21:81]])
    files = {}
    for split, source in (("train", other / "train.csv"), ("test", task / "test.csv")):
        files[split] = tmp_path / f"{split}.h5"
        run = cli("embed", source, "--checkpoint", checkpoint, "-o", files[split])
        assert run.returncode == 0, run.stderr[-2000:]
    run = cli("evaluate", "--task", task, "--embeddings", f"{files['train']},{files['test']}",
              "-o", tmp_path / "probe.json")  # fmt: skip
    run.one_line_error("made from other sequences", "train.csv")
    assert not (tmp_path / "probe.json").exists()


def test_missing_labels_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.csv").write_text("sequence,label\nACGTACGT,0\nACGTTTGT,1\nACGGGGGT,NaN\n")
    run = cli("finetune", "--task", task, "--checkpoint", checkpoint, "--out", tmp_path / "ft")
    run.one_line_error("missing label", "NaN")
    assert not (tmp_path / "ft").exists()
