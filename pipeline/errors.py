"""User-facing errors: one line naming the file and the problem, non-zero exit."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """An error caused by the user's input or environment; printed as one line, exit code 2."""

    exit_code = 2


def input_error(path: str | Path, problem: str) -> PipelineError:
    """Build the standard `<path>: <problem>` error."""
    return PipelineError(f"{path}: {problem}")
