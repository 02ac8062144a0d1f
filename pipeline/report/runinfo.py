"""The report's run information: which code ran (git commit, modified or not), on what machine,
and what each workflow step cost (Snakemake `benchmark:` files: wall time and peak memory)."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
from pathlib import Path

from pipeline.errors import input_error
from pipeline.report.markup import key_value_table, metrics_table

SOURCE = Path(__file__).resolve().parents[2]


def code_version(source: Path = SOURCE) -> dict[str, str]:
    """The git commit of the code that wrote the report and whether its tracked files differ
    from it; 'not a git checkout' for an installed copy."""
    try:
        commit = _git(source, "rev-parse", "HEAD")
        changed = _git(source, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return {"git commit": "not a git checkout"}
    modified = len(changed.splitlines())
    tree = "clean" if not modified else f"modified ({modified} tracked files differ)"
    return {"git commit": commit, "working tree": tree}


def _git(source: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(source), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


def hardware() -> dict[str, str]:
    """CPU model, cores, memory and GPUs of this machine (the one writing the report)."""
    facts = {"CPU": cpu_model(), "CPU cores": str(os.cpu_count() or "unknown")}
    memory = _meminfo_gib()
    if memory is not None:
        facts["memory"] = f"{memory:.1f} GiB"
    facts["GPUs"] = _gpus()
    return facts


def cpu_model() -> str:
    """The CPU model name (/proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpus() -> str:
    import torch

    if not torch.cuda.is_available():
        return "none"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(names)


def benchmark_rows(folder: Path) -> list[dict]:
    """One row per Snakemake benchmark file under `folder` (step = its path without .tsv),
    longest first: wall time, CPU time and peak resident memory."""
    if not folder.is_dir():
        raise input_error(folder, "no such folder (expected the workflow's benchmarks/)")
    measured = []
    for path in sorted(folder.rglob("*.tsv")):
        with open(path, newline="") as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if not records or "s" not in records[-1]:
            raise input_error(path, "not a Snakemake benchmark file (no 's' column)")
        last = records[-1]  # a repeated benchmark keeps one line per run
        step = str(path.relative_to(folder).with_suffix(""))
        measured.append((step, *(_number(last.get(k)) for k in ("s", "cpu_time", "max_rss"))))
    measured.sort(key=lambda row: -(row[1] or 0))
    return [
        {
            "step": step,
            "wall time (s)": _text(wall, "{:,.1f}"),
            "CPU time (s)": _text(cpu, "{:,.1f}"),
            "peak memory (MB)": _text(rss, "{:,.0f}"),
        }
        for step, wall, cpu, rss in measured
    ]


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # Snakemake writes NA where it could not measure


def _text(value: float | None, pattern: str) -> str | None:
    return None if value is None else pattern.format(value)


def run_information_section(benchmarks: Path | None) -> str:
    parts = [
        "<h2>Run information</h2>",
        key_value_table({**code_version(), **hardware()}),
    ]
    if benchmarks is not None:
        rows = benchmark_rows(benchmarks)
        parts.append("<h3>Runtime and peak memory per step</h3>")
        parts.append(metrics_table(rows) if rows else "<p>No benchmark files yet.</p>")
    return "".join(parts)
