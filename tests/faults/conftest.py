"""Fault injection: the CLI in a subprocess (as users and SLURM run it), a tiny model, a small
task, and folders that are full or read-only.

A full disk is a 64 KiB tmpfs when this process may mount one (root); otherwise a file size
limit (RLIMIT_FSIZE) on the child, which fails the same writes with EFBIG. A read-only folder is
a read-only tmpfs, or a folder without write permission for a non-root user.
"""

from __future__ import annotations

import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from titans_dna.models import TitansConfig, TitansLM

REPO = Path(__file__).resolve().parents[2]
SIZES = dict(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32)


@dataclass(frozen=True)
class Run:
    """A finished CLI run."""

    returncode: int
    stderr: str

    def one_line_error(self, *needles: str, code: int = 3) -> str:
        """The run failed with exit `code` (3 bad input, 4 cannot write, 143 SIGTERM) and
        exactly one stderr line that is not a log line, holding the needles; no traceback."""
        assert self.returncode == code, (self.returncode, self.stderr[-2000:])
        assert "Traceback" not in self.stderr, self.stderr[-3000:]
        lines = [line for line in self.stderr.splitlines() if " INFO " not in line and line]
        lines = [line for line in lines if " WARNING " not in line]
        assert len(lines) == 1, self.stderr[-3000:]
        for needle in needles:
            assert needle in lines[0], lines[0]
        return lines[0]


def cli(*args: str | Path, limit_bytes: int | None = None, timeout: float = 300) -> Run:
    """`python -m pipeline.cli ARGS` in a child process (optionally with a file size limit)."""

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )
    return Run(done.returncode, done.stderr)


def _mount(options: str) -> Path | None:
    """A new tmpfs mounted with `options`, or None when this process cannot mount."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="titans-dna-faults-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        folder.rmdir()
        return None
    return folder


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class FullDisk:
    """A folder whose writes fail beyond a few KiB; `limit` is the child's file size limit
    (None when the folder is a real full tmpfs)."""

    folder: Path
    limit: int | None


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    mounted = _mount("size=64k")
    if mounted is None:
        yield FullDisk(tmp_path, 64 * 1024)
        return
    try:
        yield FullDisk(mounted, None)
    finally:
        _unmount(mounted)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    mounted = _mount("size=1m,ro")
    if mounted is not None:
        try:
            yield mounted
        finally:
            _unmount(mounted)
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: an immutable folder instead
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    else:
        folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("no way to make a read-only folder here (no mount, no chattr)")
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
        folder.chmod(0o755)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("lm") / "model"
    TitansLM(TitansConfig.preset("tiny", **SIZES)).save_pretrained(directory)
    return directory


def write_task(folder: Path, shared_data: Path, rows: int = 60) -> Path:
    """The first rows of GUE mouse_0's splits as a task folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        with open(shared_data / "benchmarks" / "gue" / "mouse_0" / f"{split}.csv") as src:
            reader = csv.reader(src)
            kept = [next(reader) for _ in range(rows + 1)]
        with open(folder / f"{split}.csv", "w", newline="") as dst:
            csv.writer(dst).writerows(kept)
    return folder


@pytest.fixture
def task(tmp_path: Path, shared_data: Path) -> Path:
    return write_task(tmp_path / "task", shared_data)


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries of atomic writes left in `folder`."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
