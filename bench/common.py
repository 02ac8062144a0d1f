"""Benchmark helpers: machine description, markdown tables, appending to docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pipeline.report.runinfo import cpu_model

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
SHARED_DATA = Path(os.environ.get("TITANS_DNA_SHARED_DATA", REPO.parent / "shared" / "data"))


def machine_line() -> str:
    """One line: date, cores, CPU model, GPU (if any), Python and package versions."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    versions = ", ".join(f"{name} {_version(name)}" for name in ("titans-dna", "torch", "numpy"))
    versions += f", scikit-learn {_version('scikit-learn')}, h5py {_version('h5py')}"
    return (
        f"{datetime.date.today().isoformat()}; {os.cpu_count()} cores, {cpu_model()}, {gpu}; "
        f"Python {platform.python_version()}, {versions}"
    )


def process_memory_mib(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory in MiB. Unlike
    getrusage's ru_maxrss, which keeps the parent's peak across fork and exec, VmHWM starts
    afresh in each new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def append_section(heading: str, body: str) -> None:
    """Append `## heading` with the machine line, the exact command and `body`."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    text = f"\n## {heading}\n\n{machine_line()}\n\nCommand: `{command}`\n\n{body}\n"
    BENCHMARKS_MD.parent.mkdir(exist_ok=True)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n")
    with open(BENCHMARKS_MD, "a") as handle:
        handle.write(text)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "n/a"
