"""Manifests: the size and sha256 of every file of a folder, written last, checked on load.

A checkpoint folder with a manifest is trusted only when every listed file matches it, so a
corrupted or half-copied model fails with one line instead of loading wrong weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_manifest(folder: Path, names: Iterable[str]) -> None:
    """Record the size and sha256 of `names` (files in `folder`) in its manifest."""
    entries = {
        name: {"size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        for name in names
    }
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=2) + "\n")


def manifest_problem(folder: Path, required: Iterable[str] = ()) -> str | None:
    """Why `folder`'s files do not match its manifest (or `required` ones are not listed), or
    None when they all do."""
    try:
        files = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST_FILE} (half-written)"
    for name in {*required, *files}:
        path, entry = folder / name, files.get(name)
        if entry is None or not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            return f"{name} does not match the manifest (corrupt)"
    return None
