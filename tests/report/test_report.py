"""The HTML run report on small synthetic pretrain, finetune and embedding outputs."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.report.figures import principal_components
from pipeline.report.html import ReportInputs, finetune_rows, read_window_embeddings, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pretrain_dir(root: Path) -> Path:
    folder = root / "pretrain"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"weights")
    (folder / "model" / "config.json").write_text("{}")
    columns = ["step", "tokens", "context", "lr", "train_loss", "val_loss", "val_bits_per_base"]
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for step in range(10, 110, 10):
            evaluated = step % 50 == 0
            loss = 1.4 - step / 1000
            row = [step, step * 4096, 1024, 1e-3, loss]
            row += [loss + 0.01, (loss + 0.01) / np.log(2)] if evaluated else ["", ""]
            writer.writerow(row)
    (folder / "model" / ".snakemake_timestamp").write_text("")
    markov = {"best_order": 7, "bits_per_base": 1.9495, "bits_per_order": {"0": 1.99}}
    summary = {"val_bits_per_base": 1.91, "wall_s": 61.5, "markov": markov}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _finetune_dir(root: Path, task: str, mcc: float) -> Path:
    folder = root / "finetune" / task
    folder.mkdir(parents=True)
    scores = {"mcc": mcc, "accuracy": 0.7, "f1": 0.69, "auroc": 0.77}
    metrics = {"dev": scores, "test": scores, "wall_seconds": 42.0, "train_examples": 1000}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _embeddings(root: Path, compound: bool = True) -> Path:
    path = root / "phage.h5"
    rng = np.random.default_rng(0)
    n, d = 24, 16
    starts = np.arange(n) * 2000
    # a smooth drift along the genome so that PC1 follows position
    emb = rng.normal(size=(n, d)).astype(np.float32) * 0.1 + np.outer(starts, np.ones(d)) / 1e4
    with h5py.File(path, "w") as handle:
        handle["ids"] = np.array([f"NC_001416.1:{s}-{s + 2000}" for s in starts], dtype=object)
        handle["embeddings"] = emb
        handle["lengths"] = np.full(n, 2000, dtype=np.int64)
        if compound:
            table = np.zeros(n, dtype=[("contig", "S16"), ("start", "i8"), ("end", "i8")])
            table["contig"], table["start"], table["end"] = b"NC_001416.1", starts, starts + 2000
            handle["windows"] = table
        else:
            handle["windows/start"] = starts
            handle["windows/end"] = starts + 2000
        handle.attrs["schema_version"] = 1
        handle.attrs["pooling"] = "mean"
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> ReportInputs:
    config = tmp_path / "config.yaml"
    config.write_text("results: results/demo\nmodel: tiny\n")
    genome = tmp_path / "genome.fa"
    genome.write_text(">x\nACGT\n")
    return ReportInputs(
        pretrain=_pretrain_dir(tmp_path),
        finetune=[
            _finetune_dir(tmp_path, "prom_300_tata", 0.31),
            _finetune_dir(tmp_path, "my_task", 0.5),
        ],
        embeddings=[_embeddings(tmp_path)],
        config=config,
        inputs=[genome],
    )


def _images(document: str) -> list[bytes]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    return [base64.b64decode(data) for data in found]


def test_report_has_metrics_table_images_and_provenance(outputs: ReportInputs, tmp_path: Path):
    out = tmp_path / "report.html"
    write_report(outputs, out)
    document = out.read_text()
    images = _images(document)
    assert len(images) == 2 and all(image.startswith(PNG_MAGIC) for image in images)
    table = re.search(r'<table class="metrics">(.*?)</table>', document, re.S).group(1)
    assert "prom_300_tata" in table and "my_task" in table
    assert "0.310" in table and "0.393" in table and "0.749" in table  # own MCC, k-mer MCC/AUROC
    assert "0.716" in table  # the published DNABERT-2 MCC of prom_300_tata
    assert hashlib.sha256(b">x\nACGT\n").hexdigest() in document
    assert hashlib.sha256(b"weights").hexdigest() in document  # checkpoint checksum
    assert ".snakemake_timestamp" not in document
    assert "order-7 Markov baseline bits/base</th><td>1.950" in document
    assert "model: tiny" in document and "torch" in document
    assert 'src="http' not in document and "<script" not in document  # self-contained


def test_report_cli_and_missing_input(outputs: ReportInputs, tmp_path: Path, capsys):
    out = tmp_path / "cli.html"
    argv = ["report", "--pretrain", str(outputs.pretrain), "--finetune"]
    argv += [str(p) for p in outputs.finetune] + ["--embeddings", str(outputs.embeddings[0])]
    assert main([*argv, "--config", str(outputs.config), "-o", str(out)]) == 0
    assert out.is_file()
    missing = tmp_path / "finetune" / "absent_task"
    missing.mkdir()
    bad = tmp_path / "bad.html"
    assert main(["report", "--finetune", str(missing), "-o", str(bad)]) == 3
    error = capsys.readouterr().err
    assert f"{missing / 'metrics.json'}: missing" in error
    assert not bad.exists()


def test_missing_pretrain_metrics_names_the_file(outputs: ReportInputs, tmp_path: Path):
    (outputs.pretrain / "metrics.csv").unlink()
    with pytest.raises(PipelineError, match=r"metrics\.csv: missing"):
        write_report(outputs, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_window_table_as_group_and_finetune_rows(tmp_path: Path):
    path = _embeddings(tmp_path, compound=False)
    embeddings, positions, attrs = read_window_embeddings(path)
    assert embeddings.shape == (24, 16)
    assert positions[0] == 1000 and positions[-1] == 23 * 2000 + 1000
    assert attrs["pooling"] == "mean"
    rows = finetune_rows([_finetune_dir(tmp_path, "mouse_0", 0.4)])
    assert rows[0]["k-mer LR MCC"] == 0.546 and rows[0]["test MCC"] == 0.4


def test_principal_components_follow_the_dominant_direction():
    rng = np.random.default_rng(1)
    t = np.linspace(-1, 1, 50)
    data = np.outer(t, [3.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=(50, 3))
    scores, ratio = principal_components(data)
    assert abs(np.corrcoef(scores[:, 0], t)[0, 1]) > 0.99
    assert ratio[0] > 0.99 and scores.shape == (50, 2)
