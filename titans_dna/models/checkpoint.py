"""Checkpoint folders: config.json (model_type, config, format_version, extra fields) and
model.safetensors, written atomically and checked strictly on load."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from titans_dna.atomic import atomic_dir

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_RESERVED = ("model_type", "config", "format_version")
_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A folder that is not a readable checkpoint of the requested model type."""


def save_checkpoint(
    model: nn.Module,
    directory: str | Path,
    *,
    model_type: str,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `directory` (replacing it as a whole) with config.json and model.safetensors.

    `extra` holds further JSON fields stored beside "config" (e.g. label names). The folder is
    built under a temporary name and renamed when complete, so a crash never leaves a half
    checkpoint under the final name; files another writer adds must be written afterwards. An
    existing `directory` is replaced only when it is empty or a checkpoint (CheckpointError
    otherwise: a folder of other files is never deleted).
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra checkpoint fields may not use reserved keys: {', '.join(clash)}")
    meta = {"model_type": model_type, "format_version": FORMAT_VERSION, "config": config, **extra}
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    final = Path(directory)
    if not final.parent.is_dir():
        raise CheckpointError(f"{final}: output folder {final.parent} does not exist")
    try:
        with atomic_dir(final, replaceable=_is_checkpoint_or_empty) as tmp:
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
            _save_tensors(tensors, tmp / WEIGHTS_FILE)
    except FileExistsError:
        raise CheckpointError(
            f"{final}: exists and is not a checkpoint; it is left as it is (choose another "
            "folder or remove it)"
        ) from None
    return final


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """save_file, with its I/O failures (a full disk) raised as OSError like any other write,
    and the file's permissions from the umask like its siblings' (safetensors writes 0600)."""
    try:
        save_file(tensors, str(path), metadata={"format": "pt"})
    except SafetensorError as err:
        code = re.search(r"os error (\d+)", str(err))
        raise OSError(int(code[1]) if code else errno.EIO, str(err), str(path)) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _is_checkpoint_or_empty(folder: Path) -> bool:
    if not any(folder.iterdir()):
        return True
    try:
        return "model_type" in json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError, TypeError):
        return False


def read_checkpoint_meta(directory: str | Path, *, model_type: str | None = None) -> dict[str, Any]:
    """Return the parsed config.json of a checkpoint (of `model_type`, when given), or raise
    CheckpointError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder does not exist")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint (no {CONFIG_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint config ({err})") from err
    if not isinstance(meta, dict) or "model_type" not in meta or "config" not in meta:
        raise CheckpointError(f"{path}: not a titans-dna checkpoint (no model_type/config fields)")
    found = meta["model_type"]
    if model_type is not None and found != model_type:
        raise CheckpointError(
            f"{directory}: is a {found!r} checkpoint, not {model_type!r}; "
            "load it with the class of that model type"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported "
            f"(this titans-dna reads version {FORMAT_VERSION})"
        )
    return meta


def load_weights(model: nn.Module, directory: str | Path, map_location: str = "cpu") -> None:
    """Load model.safetensors into `model`; keys and shapes must match exactly."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{Path(directory)}: checkpoint has no {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err})") from err
    _check_matches(model.state_dict(), tensors, path)
    broken = [n for n, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{path}: corrupt weights: {len(broken)} tensor(s) hold NaN or infinity "
            f"({_listing(broken)})"
        )
    model.load_state_dict(tensors, strict=True)


def _check_matches(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: Path
) -> None:
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{name} {tuple(found[name].shape)} vs {tuple(expected[name].shape)} expected"
        for name in sorted(set(expected) & set(found))
        if found[name].shape != expected[name].shape
    ]
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_listing(shapes)}")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(problems))


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown} (+{more} more)" if more > 0 else shown
