"""The demo workflow end to end on the CPU, run as a user runs it (`snakemake --cores 2`, the
default profile), interrupted once: Snakemake and its jobs are killed (SIGKILL, as in a crash)
once pretraining has written a checkpoint; the same command again must reuse every finished
step, resume pretraining from that checkpoint and produce every output of the demo."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from .conftest import BIN, SNAKEFILE, demo_config, snakemake, write_config

pytestmark = pytest.mark.slow

METRIC_KEYS = {"mcc", "accuracy", "f1", "auroc"}
PHAGE_BASES = 48502


def _start(workdir: Path, config: Path) -> subprocess.Popen:
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "-d", str(workdir)]
    command += ["--configfile", str(config), "--replace-workflow-config", "--cores", "2"]
    log = open(workdir / "first-run.log", "w")  # noqa: SIM115 - closed when the run is killed
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_checkpoint(run: subprocess.Popen, pretrain: Path, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sorted((pretrain / "checkpoints").glob("step-*/manifest.json"))
        if done:
            return done[-1].parent
        assert run.poll() is None, "the workflow ended before pretraining wrote a checkpoint"
        time.sleep(2)
    raise AssertionError(f"no pretraining checkpoint within {timeout} s")


def _executed_rules(output: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):$", output, re.M))


def test_demo_interrupted_then_resumed(shared_data: Path, tmp_path: Path):
    demo = demo_config(shared_data)
    # an early checkpoint: interrupt sooner
    demo["pretrain"]["options"]["set"]["checkpoint.every"] = 2
    config = write_config(tmp_path, demo)
    results = tmp_path / "results" / "demo"
    first = _start(tmp_path, config)
    try:
        checkpoint = _wait_for_checkpoint(first, results / "pretrain", timeout=600)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    seen_step = int(checkpoint.name.removeprefix("step-"))
    stores = sorted((results / "tokens").glob("*.h5"))
    assert len(stores) == 4
    store_times = {path: path.stat().st_mtime_ns for path in stores}
    assert not (results / "pretrain" / "model").exists()

    assert snakemake(tmp_path, "--unlock", config=config).returncode == 0
    second = snakemake(tmp_path, "--cores", "2", config=config, timeout=1200)
    assert second.returncode == 0, second.stdout[-5000:]

    # Finished steps were reused: no genome fetch or tokenize job ran again, the stores are
    # untouched (the VCF fetch may or may not have run before the interruption).
    downstream = {
        "pretrain",
        "finetune",
        "evaluate",
        "embed",
        "long_context",
        "score_variants",
        "report",
        "all",
    }
    assert _executed_rules(second.stdout) - {"fetch_vcf"} == downstream
    assert {path: path.stat().st_mtime_ns for path in stores} == store_times
    resumed = re.search(
        r"resumed from \S+/checkpoints/step-(\d{8}) at step (\d+)",
        (results / "logs" / "pretrain.log").read_text(),
    )
    assert resumed and int(resumed[1]) >= seen_step

    _check_pretrain(results / "pretrain", resumed_step=int(resumed[2]))
    _check_finetune(results / "finetune")
    width = json.loads((results / "pretrain/model/config.json").read_text())["config"]["d_model"]
    _check_embeddings(results / "embeddings" / "lambda_phage.h5", width)
    _check_report(results)


def _check_pretrain(pretrain: Path, resumed_step: int) -> None:
    model = pretrain / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (model / name).is_file(), name
    # protected: no write permission bits on the final model
    assert stat.S_IMODE((model / "model.safetensors").stat().st_mode) & 0o222 == 0
    with open(pretrain / "metrics.csv") as handle:
        header = handle.readline().strip().split(",")
        steps = [int(float(line.split(",")[0])) for line in handle if line.strip()]
    assert {
        "step",
        "tokens",
        "context",
        "lr",
        "train_loss",
        "val_loss",
        "val_bits_per_base",
    } <= set(header)
    assert steps and max(steps) > resumed_step
    summary = json.loads((pretrain / "summary.json").read_text())
    assert summary, "empty summary.json"


def _check_finetune(finetune: Path) -> None:
    for task in ("prom_300_tata", "mouse_0"):
        metrics = json.loads((finetune / task / "metrics.json").read_text())
        assert set(metrics["dev"]) >= METRIC_KEYS and set(metrics["test"]) >= METRIC_KEYS
        assert -1.0 <= metrics["test"]["mcc"] <= 1.0
        assert metrics["train_examples"] > 0
        assert (finetune / task / "model" / "config.json").is_file()
        assert (finetune / task / "label_map.json").is_file()


def _check_embeddings(path: Path, width: int) -> None:
    with h5py.File(path, "r") as handle:
        n, d = handle["embeddings"].shape
        windows = handle["windows"][()]
        assert d == width and n == len(handle["ids"]) == len(windows) == len(handle["lengths"])
        # 2048-base windows with stride 2048 tile the 48,502-base phage genome
        assert n >= PHAGE_BASES // 2048
        assert list(windows["start"][:3]) == [0, 2048, 4096]
        assert windows["end"].max() <= PHAGE_BASES


def _check_report(results: Path) -> None:
    report = (results / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') >= 2
    assert "prom_300_tata" in report and "mouse_0" in report and "lambda_phage" in report
    assert (results / "config.yaml").is_file()
    for rule in ("pretrain", "report"):
        assert (results / "benchmarks" / f"{rule}.tsv").is_file()
