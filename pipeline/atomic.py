"""Atomic outputs: write under a temporary name in the same folder, rename when complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import input_error


def _temporary_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def check_output_parent(final: str | Path) -> Path:
    """Return `final` as a Path, failing clearly when its folder does not exist."""
    final = Path(final)
    if not final.parent.is_dir():
        raise input_error(final, f"output folder {final.parent} does not exist")
    return final


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to `final`, on any error remove it."""
    final = check_output_parent(final)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `final` (old contents removed)."""
    final = check_output_parent(final)
    tmp = _temporary_sibling(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
