"""Two CPU processes under torchrun (gloo) train like one process with the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.pretrain.loop import run_pretraining

from .helpers import TINY, assert_same_trajectory, tiny_config

REPO = Path(__file__).resolve().parents[2]
RUN = (
    "train.max_steps=6",
    "train.log_every=1",
    "eval.markov_max_order=0",
    "eval.every=3",
    "train.grad_accum=2",
)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_match_one_process(lambda_store: Path, tmp_path: Path) -> None:
    # batch_size 8 over 2 ranks x 2 micro-batches: each rank reads 4 of the 8 windows per step
    sets = [a for s in [*TINY, *RUN, "train.batch_size=8"] for a in ("--set", s)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command = [*launcher, "--nproc_per_node", "2", "-m", "pipeline.cli", "pretrain"]
    ddp = tmp_path / "ddp"
    result = subprocess.run(
        [*command, "--store", str(lambda_store), "--out", str(ddp), "--device", "cpu", *sets],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = tmp_path / "single"
    run_pretraining(tiny_config([lambda_store], *RUN, "train.batch_size=8"), single, device="cpu")

    got, want = _rows(ddp), _rows(single)
    assert_same_trajectory(got, want)
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2
    single_summary = json.loads((single / "summary.json").read_text())
    assert summary["val_scored_bases"] == single_summary["val_scored_bases"]
    assert summary["val_loss"] == pytest.approx(single_summary["val_loss"], rel=1e-3)
