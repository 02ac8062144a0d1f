"""Linear probe on frozen embeddings: the probe itself, and `titans-dna evaluate` both ways."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.probe import linear_probe
from titans_dna.models import TitansConfig, TitansLM


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = TitansConfig.preset(
        "tiny", d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32
    )
    directory = tmp_path_factory.mktemp("lm") / "model"
    TitansLM(config).save_pretrained(directory)
    return directory


@pytest.fixture
def task(shared_data: Path, tmp_path: Path) -> Path:
    """120 / 40 / 60 rows of the real prom_core_all splits (70 bp)."""
    folder = tmp_path / "prom_core_all"
    folder.mkdir()
    source = shared_data / "benchmarks" / "gue" / "prom_core_all"
    for split, n in (("train", 120), ("dev", 40), ("test", 60)):
        with open(source / f"{split}.csv", newline="") as handle:
            rows = [row for _, row in zip(range(n + 1), csv.reader(handle), strict=False)]
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    return folder


def test_probe_separates_informative_embeddings_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=300)
    signal = rng.normal(size=(300, 8))
    signal[:, 0] += 2.0 * y
    result = linear_probe(signal[:200], y[:200], signal[200:], y[200:], num_labels=2)
    assert result["test"]["auroc"] > 0.9 and result["test"]["mcc"] > 0.5
    noise = rng.normal(size=(300, 8))
    result = linear_probe(noise[:200], y[:200], noise[200:], y[200:], num_labels=2)
    assert 0.3 < result["test"]["auroc"] < 0.7
    assert result["folds"] == 5 and result["C"] > 0


def test_probe_multiclass() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 60)
    x = rng.normal(size=(180, 6)) + np.eye(3, 6)[y] * 3
    order = rng.permutation(180)
    x, y = x[order], y[order]
    result = linear_probe(x[:120], y[:120], x[120:], y[120:], num_labels=3)
    assert result["test"]["auroc"] > 0.9 and result["test"]["accuracy"] > 0.8


def test_evaluate_from_checkpoint_equals_evaluate_from_embed_files(
    task: Path, checkpoint: Path, tmp_path: Path
) -> None:
    direct = tmp_path / "direct.json"
    args = ["evaluate", "--task", str(task), "-o", str(direct), "--device", "cpu"]
    assert main([*args, "--checkpoint", str(checkpoint)]) == 0
    files = []
    for split in ("train", "dev", "test"):
        files.append(tmp_path / f"{split}.h5")
        assert main(["embed", str(task / f"{split}.csv"), "--checkpoint", str(checkpoint),
                     "-o", str(files[-1]), "--device", "cpu"]) == 0  # fmt: skip
    via_files = tmp_path / "files.json"
    args = ["evaluate", "--task", str(task), "-o", str(via_files)]
    assert main([*args, "--embeddings", ",".join(map(str, files))]) == 0
    a, b = json.loads(direct.read_text()), json.loads(via_files.read_text())
    assert set(a["test"]) == {"mcc", "accuracy", "f1", "auroc"}
    assert 0 <= a["test"]["auroc"] <= 1 and a["train_examples"] == 160 and a["test_examples"] == 60
    for key in a["test"]:
        assert a["test"][key] == pytest.approx(b["test"][key], abs=1e-6)
    assert a["source"]["checkpoint_sha256"] == b["source"]["checkpoint_sha256"]


def error_line(capsys: pytest.CaptureFixture) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("titans-dna evaluate: error: "), lines
    return lines[0]


def test_embeddings_missing_examples_are_an_error(
    task: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "few.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = 1
        f["ids"] = np.array(["train:1", "train:2"], dtype=object)
        f["embeddings"] = np.zeros((2, 4), dtype=np.float32)
        f["lengths"] = np.array([70, 70])
    out = tmp_path / "m.json"
    code = main(["evaluate", "--task", str(task), "--embeddings", f"{path},{path}", "-o", str(out)])
    assert code == 3
    assert "no embedding for 118 example(s)" in error_line(capsys)
    assert not out.exists()


def test_a_task_without_test_split(
    task: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (task / "test.csv").unlink()
    out = tmp_path / "m.json"
    assert (
        main(["evaluate", "--task", str(task), "--checkpoint", str(checkpoint), "-o", str(out)])
        == 3
    )
    assert "no test split" in error_line(capsys)
