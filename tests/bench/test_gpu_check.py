"""bench/gpu_check.sh and bench/train_step_gpu.py without a GPU: the parts that can run here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import train_step_gpu  # noqa: E402


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the refusal on a machine without one"
)
def test_gpu_check_refuses_clearly_without_a_gpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"gpu_check.sh: error: {sys.executable} cannot import torch or sees no CUDA device"
    )


def test_train_step_dry_run_writes_its_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "step.md"
    assert train_step_gpu.main(["--dry-run", "--variants", "lmm", "--markdown", str(table)]) == 0
    rows = [line for line in table.read_text().splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 1 and "| lmm | 1 | 2048 | chunk |" in rows[0], rows
    assert "step s" in capsys.readouterr().out
