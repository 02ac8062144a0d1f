"""User-facing errors: one line naming the file and the problem, non-zero exit."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """An error caused by the user's input; printed as one line, exit code 3 (2 is argparse's,
    for bad options)."""

    exit_code = 3


class OutputError(PipelineError):
    """An output that cannot be written (full disk, read-only folder, no permission): exit 4."""

    exit_code = 4


def input_error(path: str | Path, problem: str) -> PipelineError:
    """Build the standard `<path>: <problem>` error."""
    return PipelineError(f"{path}: {problem}")
