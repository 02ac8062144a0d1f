"""SIGTERM (SLURM's cancel and time limit) mid-write: the same clean exit as Ctrl-C, exit 143,
no temporary left; SIGKILL leaves one, which the next run of the same output removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, leftovers

ECOLI = "genomes/ecoli_k12_mg1655.fa.gz"


def start(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_temporary(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not leftovers(folder):
        if process.poll() is not None:
            raise AssertionError(f"ended before writing: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no temporary output appeared")
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the write


def embed_args(shared_data: Path, checkpoint: Path, out: Path) -> tuple:
    return ("embed", shared_data / ECOLI, "--checkpoint", checkpoint, "-o", out, "--device", "cpu")


def finetune_args(task: Path, checkpoint: Path, out: Path) -> tuple:
    return ("finetune", "--task", task, "--checkpoint", checkpoint, "--out", out,
            "--epochs", "50", "--no-probe-candidate", "--device", "cpu")  # fmt: skip


@pytest.mark.parametrize("command", ["embed", "finetune"])
def test_sigterm_mid_write(
    command: str, shared_data: Path, checkpoint: Path, task: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "embed":
        args = embed_args(shared_data, checkpoint, out_dir / "e.h5")
    else:
        args = finetune_args(task, checkpoint, out_dir / "ft")
    process = start(*args)
    wait_for_temporary(out_dir, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    err = process.stderr.read()
    assert "Traceback" not in err and "terminated (SIGTERM)" in err, err[-2000:]
    assert list(out_dir.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(
    shared_data: Path, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "e.h5"
    process = start(*embed_args(shared_data, checkpoint, out))
    wait_for_temporary(tmp_path, process)
    process.kill()
    process.wait()
    assert leftovers(tmp_path)  # what a killed process leaves
    rerun = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "embed", shared_data / "genomes/lambda_phage.fa.gz",
         "--checkpoint", checkpoint, "-o", out],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert leftovers(tmp_path) == [] and out.is_file()
