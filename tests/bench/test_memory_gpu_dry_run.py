"""bench/memory_gpu.py --dry-run: the whole benchmark at tiny sizes on the CPU interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("triton", reason="triton has no wheels for this platform (Linux only)")


@pytest.mark.slow
def test_dry_run_prints_every_method_and_leaves_docs_alone() -> None:
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "memory_gpu.py"), "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| method |"))
    assert "fwd+bwd TFLOP/s" in header and "peak MiB" in header
    for method in ("triton linear", "chunk linear", "triton mlp", "chunk mlp", "sdpa causal"):
        rows = [line for line in lines if line.startswith(f"| {method} |")]
        # two head dims x two lengths, printed per case and again in the final table
        assert len(rows) == 8, (method, rows)
        assert all("OOM" not in row and "nan" not in row for row in rows)
    assert (docs.read_bytes() if docs.exists() else None) == before
