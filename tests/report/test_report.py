"""The HTML run report on small synthetic pretrain, finetune and embedding outputs."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.report.embeddings import gc_share_of_pc1, read_window_embeddings
from pipeline.report.figures import classification_figure, principal_components
from pipeline.report.finetune import finetune_rows
from pipeline.report.html import ReportInputs, write_report

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
    markov = {"best_order": 7, "bits_per_base": 1.9495, "bits_per_order": {"0": 1.99, "7": 1.9495}}
    by_genome = {"ecoli": 1.90, "hpylori": 1.93}
    summary = {"val_bits_per_base": 1.91, "wall_s": 61.5, "markov": markov}
    summary.update(val_bits_per_base_by_genome=by_genome, beats_markov=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


# The sha256 of the GUE prom_300_tata splits (data/MANIFEST.tsv): that task's identity.
PROM_300_TATA = {
    "train": "d0dd45bad89aee2564b8831d38a393989942d79b673203e7eb50e19ec8e6242e",
    "dev": "4de0f8163d964e4004f0a11036d9a9c5ec6fe2ad5953f962acf66150a2f44592",
    "test": "30432e9845277559043c2bb3bfed37b9bc7efc15748880f3adeeaddc16b76deb",
}


def _finetune_dir(root: Path, task: str, mcc: float, checksums: dict | None = None) -> Path:
    folder = root / "finetune" / task
    folder.mkdir(parents=True)
    scores = {"mcc": mcc, "accuracy": 0.7, "f1": 0.69, "auroc": 0.77}
    metrics = {"dev": scores, "test": scores, "wall_seconds": 42.0, "train_examples": 1000}
    checksums = checksums or {split: hashlib.sha256(split.encode()).hexdigest() for split in "abc"}
    metrics["task_files"] = {
        split: {"file": f"{split}.csv", "sha256": digest} for split, digest in checksums.items()
    }
    metrics["labels"] = ["0", "1"]
    metrics["history"] = [
        {"step": step, "dev": {"mcc": mcc * step / 40, "auroc": 0.5 + step / 200}}
        for step in (0, 20, 40)
    ]
    metrics.update(best_step=40, steps=40, stopped_by="early_stopping")
    metrics["strand_check"] = {"forward_auroc": 0.81, "symmetric_auroc": 0.74, "oriented": True}
    metrics["probe_candidate"] = {"dev": {"mcc": 0.2}}
    if checksums is PROM_300_TATA:  # one binary model with a threshold chosen on dev, one without
        metrics["decision_threshold"] = {
            "threshold": 0.9, "dev_mcc": 0.35, "dev_mcc_argmax": mcc, "test_mcc_argmax": 0.29,
        }  # fmt: skip
    rng = np.random.default_rng(len(task))
    labels = rng.integers(0, 2, size=40)
    p_one = np.clip(labels * 0.4 + rng.uniform(0, 0.6, size=40), 0, 1)
    with open(folder / "test_predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "p_0", "p_1"])
        pairs = enumerate(zip(labels, p_one, strict=True))
        writer.writerows([f"s{i}", str(y), 1 - p, p] for i, (y, p) in pairs)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def _embeddings(root: Path, compound: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "phage.h5"
    rng = np.random.default_rng(0)
    n, d = 24, 16
    starts = np.arange(n) * 2000
    # a smooth drift along the genome so that PC1 follows position, and GC content with it
    emb = rng.normal(size=(n, d)).astype(np.float32) * 0.1 + np.outer(starts, np.ones(d)) / 1e4
    with h5py.File(path, "w") as handle:
        if compound:
            handle["gc_content"] = (0.3 + starts / 1e5).astype(np.float32)
        handle["ids"] = np.array([f"NC_001416.1:{s}-{s + 2000}" for s in starts], dtype=object)
        handle["embeddings"] = emb
        handle["lengths"] = np.full(n, 2000, dtype=np.int64)
        if compound:
            table = np.zeros(n, dtype=[("contig", "S16"), ("start", "i8"), ("end", "i8")])
            table["contig"], table["start"], table["end"] = b"NC_001416.1", starts, starts + 2000
            table["contig"][n // 2 :] = b"plasmid"  # a second contig, its windows from 0 again
            table["start"][n // 2 :] -= starts[n // 2]
            table["end"][n // 2 :] -= starts[n // 2]
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
            _finetune_dir(tmp_path, "promoters", 0.31, PROM_300_TATA),
            _finetune_dir(tmp_path, "tf_0", 0.5),  # a user's own task named like a GUE one
        ],
        embeddings=[_embeddings(tmp_path)],
        config=config,
        benchmarks=_benchmarks(tmp_path),
        inputs=[genome],
    )


def _benchmarks(root: Path) -> Path:
    folder = root / "benchmarks"
    (folder / "finetune").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (folder / "pretrain.tsv").write_text(
        header + "239.49\t0:03:59\t667.22\t1\t1\t1\t1\t1\t1\t312.47\n"
    )
    (folder / "finetune" / "tf_0.tsv").write_text(
        header + "98.10\t0:01:38\tNA\t1\t1\t1\t1\t1\t1\t97.0\n"
    )
    return folder


def _section(document: str, title: str) -> str:
    """The HTML from the <h2> of `title` to the next <h2>."""
    start = document.index(f"<h2>{title}</h2>")
    end = document.find("<h2>", start + 1)
    return document[start : end if end > 0 else None]


class _TagChecker(HTMLParser):
    """Every element closed in order (void elements need no end tag)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v and ":" in v[:12]]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"unexpected </{tag}> at {self.getpos()}")


def _images(document: str) -> list[bytes]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    return [base64.b64decode(data) for data in found]


def test_report_has_metrics_table_images_and_provenance(outputs: ReportInputs, tmp_path: Path):
    out = tmp_path / "report.html"
    write_report(outputs, out)
    document = out.read_text()
    images = _images(document)
    # pretraining, one fine-tuning figure per task (dev curve, ROC, PR, confusion), embeddings
    assert len(images) == 4 and all(image.startswith(PNG_MAGIC) for image in images)
    assert document.count("<h3>") >= 2 and "<h3>promoters</h3>" in document
    assert "given strand only: labels depend on orientation" in document
    assert "beat the frozen-probe candidate (dev MCC 0.200)" in document
    assert "dev MCC stopped improving" in document
    assert "second label from probability 0.900, chosen on dev (dev MCC 0.350, 0.310 at" in document
    assert "test MCC at arg-max 0.290" in document and "the most probable label" in document
    assert re.search(r"PC1 variance explained by GC content \(R²\)</th><td>(9\d|100)%", document)
    finetune = _section(document, "Fine-tuning")
    table = re.search(r'<table class="metrics">(.*?)</table>', finetune, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    (promoters,) = [row for row in rows if ">promoters<" in row]
    (own,) = [row for row in rows if ">tf_0<" in row]
    # identified by its files: own MCC, k-mer MCC and AUROC, published DNABERT-2 MCC
    assert "GUE prom_300_tata" in promoters
    for number in ("0.310", "0.393", "0.749", "0.716"):
        assert number in promoters
    # named like GUE tf_0 but other files: no borrowed numbers (0.627, 0.884, 0.720 are tf_0's)
    assert "GUE" not in own and not {"0.627", "0.884", "0.720"} & set(re.findall(r"\d\.\d+", own))
    assert hashlib.sha256(b">x\nACGT\n").hexdigest() in document
    assert hashlib.sha256(b"weights").hexdigest() in document  # checkpoint checksum
    assert ".snakemake_timestamp" not in document
    assert "order-7 Markov baseline bits/base</th><td>1.950" in document
    assert "model: tiny" in document and "torch" in document
    assert 'src="http' not in document and "<script" not in document  # self-contained


def test_report_is_well_formed_self_contained_and_complete(outputs: ReportInputs, tmp_path: Path):
    out = tmp_path / "report.html"
    write_report(outputs, out)
    document = out.read_text()
    checker = _TagChecker()
    checker.feed(document)
    checker.close()
    assert checker.problems == [] and checker.open == []
    assert all(url.startswith("data:image/png;base64,") for url in checker.urls), checker.urls
    assert "<script" not in document and "@import" not in document
    titles = re.findall(r"<h2>(.*?)</h2>", document)
    assert titles == [
        "Pretraining",
        "Fine-tuning",
        "Embeddings: phage.h5",
        "Run information",
        "Provenance",
    ]


def test_pretraining_section_shows_genomes_and_markov_orders(outputs, tmp_path: Path):
    write_report(outputs, tmp_path / "report.html")
    pretraining = _section((tmp_path / "report.html").read_text(), "Pretraining")
    assert "<th>ecoli</th><td>1.900</td>" in pretraining
    assert "<th>hpylori</th><td>1.930</td>" in pretraining
    assert "<td>7</td><td>1.950</td><td>yes</td>" in pretraining  # the best order, marked
    assert "<td>0</td><td>1.990</td><td>no</td>" in pretraining
    assert "beats the best Markov baseline</th><td>yes</td>" in pretraining


def test_run_information_names_code_machine_and_step_costs(outputs, tmp_path: Path):
    write_report(outputs, tmp_path / "report.html")
    info = _section((tmp_path / "report.html").read_text(), "Run information")
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    assert (commit or "not a git checkout") in info
    assert "<th>CPU cores</th>" in info and "<th>GPUs</th>" in info
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", info)
    assert rows == [
        ("pretrain", "239.5", "312.5", "667"),
        ("finetune/tf_0", "98.1", "97.0", "—"),  # NA: not measured
    ]


def test_report_cli_and_missing_input(outputs: ReportInputs, tmp_path: Path, capsys):
    out = tmp_path / "cli.html"
    argv = ["report", "--pretrain", str(outputs.pretrain), "--finetune"]
    argv += [str(p) for p in outputs.finetune] + ["--embeddings", str(outputs.embeddings[0])]
    assert main([*argv, "--config", str(outputs.config), "-o", str(out)]) == 0
    assert out.is_file() and "over seeds" not in out.read_text()
    argv += ["--finetune-seeds", str(outputs.finetune[0])]  # a task's run counted as a seed run
    assert main([*argv, "--config", str(outputs.config), "-o", str(out)]) == 0
    assert "test MCC over seeds</th>" in out.read_text()
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
    windows = read_window_embeddings(path)
    assert windows.vectors.shape == (24, 16) and windows.gc is None
    assert windows.midpoints[0] == 1000 and windows.midpoints[-1] == 23 * 2000 + 1000
    assert windows.attrs["pooling"] == "mean" and set(windows.contigs) == {"all"}
    windows = read_window_embeddings(_embeddings(tmp_path / "two", compound=True))
    assert windows.contigs[0] == "NC_001416.1" and windows.contigs[-1] == "plasmid"
    assert windows.midpoints[12] == 1000 and gc_share_of_pc1(windows.vectors, windows.gc) > 0.9
    rows = finetune_rows([_finetune_dir(tmp_path, "mouse_0", 0.4)])  # not GUE mouse_0's files
    assert rows[0]["k-mer LR MCC"] is None and rows[0]["test MCC"] == 0.4
    rows = finetune_rows([_finetune_dir(tmp_path, "renamed", 0.4, PROM_300_TATA)])
    assert rows[0]["k-mer LR MCC"] == 0.393 and rows[0]["known as"] == "GUE prom_300_tata"


def test_principal_components_follow_the_dominant_direction():
    rng = np.random.default_rng(1)
    t = np.linspace(-1, 1, 50)
    data = np.outer(t, [3.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=(50, 3))
    scores, ratio = principal_components(data)
    assert abs(np.corrcoef(scores[:, 0], t)[0, 1]) > 0.99
    assert ratio[0] > 0.99 and scores.shape == (50, 2)


def test_confusion_matrix_counts_the_models_decisions() -> None:
    labels = np.array([0, 0, 1, 1])
    positive = np.array([0.2, 0.6, 0.7, 0.95])
    probabilities = np.stack([1 - positive, positive], axis=1)

    def cells(threshold: float | None) -> list[str]:
        figure = classification_figure(
            [], labels, probabilities, ["no", "yes"], threshold=threshold
        )
        return [text.get_text() for text in figure.axes[3].texts]

    # rows: true label, columns: predicted, in reading order
    assert cells(None) == ["1", "1", "0", "2"]
    assert cells(0.9) == ["2", "0", "1", "1"]


def test_seed_runs_of_the_same_task_give_the_spread(tmp_path: Path):
    main_run = _finetune_dir(tmp_path, "promoters", 0.30, PROM_300_TATA)
    seeds = [_finetune_dir(tmp_path / f"seed{n}", "promoters", mcc, PROM_300_TATA)
             for n, mcc in ((1, 0.34), (2, 0.38))]  # fmt: skip
    other = _finetune_dir(tmp_path / "other", "promoters", 0.9)  # other files: not a seed of it
    (row,) = finetune_rows([main_run], seeds=[*seeds, other])
    assert row["seeds"] == 3 and row["test MCC over seeds"] == "0.340 ± 0.040"
    assert "seeds" not in finetune_rows([main_run])[0]  # no seed runs, no seed columns
