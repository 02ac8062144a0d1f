"""Atomic outputs: build under a temporary sibling name, rename into place when complete.

A crash, a kill or a full disk never leaves a half-written file or folder under the final name.
Temporaries are named `.NAME.tmp-HOST-PID.EXT` (and `.NAME.old-HOST-PID.EXT` while a folder is
swapped; EXT is the output's own extension, which some writers insist on);
those left by processes of this host that no longer run are removed the next time the same
output is written. New files follow the process umask, like any file the process creates.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def _tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def temporary_sibling(final: Path, kind: str = "tmp") -> Path:
    """`.NAME.KIND-HOST-PID.EXT` beside `final` (EXT: the suffix of `final`, if any)."""
    return final.with_name(f".{final.name}.{kind}-{_tag()}{final.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(final: Path) -> list[Path]:
    """Remove the temporaries of `final` left by dead processes of this host; return them."""
    host, removed = socket.gethostname(), []
    for kind in ("tmp", "old"):
        prefix = f".{final.name}.{kind}-{host}-"
        for path in final.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix) :].removesuffix(final.suffix)
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                _remove(path)
                removed.append(path)
    return removed


def _remove(path: Path) -> None:
    """Remove a file or folder, ignoring errors (cleanup must not hide the first error)."""
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to `final`, on any error remove it.

    IsADirectoryError when `final` is an existing folder.
    """
    final = Path(final)
    if final.is_dir():
        raise IsADirectoryError(21, "is a folder, not a file", str(final))
    remove_stale(final)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        _remove(tmp)


@contextmanager
def atomic_dir(final: str | Path, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a new temporary folder; on success it replaces `final` as a whole.

    An existing `final` is replaced only when `replaceable(final)` says so; otherwise
    FileExistsError before anything is written (a file in the way is never replaced).
    """
    final = Path(final)
    present = final.exists() or final.is_symlink()
    if present and (not final.is_dir() or not replaceable(final)):
        raise FileExistsError(17, "exists and is not an output this program wrote", str(final))
    remove_stale(final)
    tmp = temporary_sibling(final)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            old = temporary_sibling(final, "old")
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)
