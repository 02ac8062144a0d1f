"""Resumable training checkpoints: OUT/checkpoints/step-XXXXXXXX/.

A checkpoint folder is a loadable TitansLM checkpoint plus the training state:

    config.json, model.safetensors   the model (TitansLM.save_pretrained)
    tokenizer.json                   the tokenizer
    config.yaml                      the resolved pretrain configuration
    training_state.pt                step, tokens seen, optimizer, scheduler, sampler position,
                                     RNG states of every rank (python, numpy, torch, cuda)
    manifest.json                    size and sha256 of every file above; written last

It is built under a temporary name and renamed when complete, so a crash (or a full disk) leaves
the previous checkpoints untouched. A folder counts as valid only when its manifest is present and
every listed file matches it; resume takes the newest valid one and skips anything else.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.atomic import atomic_dir
from pipeline.errors import PipelineError
from pipeline.manifest import manifest_problem, write_manifest
from pipeline.pretrain.config import PretrainConfig, config_to_dict, save_config
from titans_dna.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from titans_dna.models.config import TitansConfig
from titans_dna.tokenizer import DNATokenizer

log = logging.getLogger("pipeline")

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
TOKENIZER_FILE = "tokenizer.json"
PRETRAIN_CONFIG_FILE = "config.yaml"
STATE_FORMAT = 1
REQUIRED = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, PRETRAIN_CONFIG_FILE, STATE_FILE)
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after `step` optimizer steps."""
    return f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    """This process's generator states (python, numpy, torch, cuda) as tensors and plain values."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    config: PretrainConfig,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write OUT/checkpoints/step-XXXXXXXX atomically, then keep only the newest `keep`.

    `model` is the bare TitansLM (not a DDP wrapper); `state` the training state dict.
    A failure (e.g. disk full) removes the partial folder and raises the same error (an
    OutputError for a write that failed), naming the newest checkpoint that is intact.
    """
    root = out / CHECKPOINTS
    root.mkdir(exist_ok=True)
    final = root / checkpoint_name(step)
    try:
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp)  # replaces `tmp` as a whole: write it first
            DNATokenizer().save(tmp / TOKENIZER_FILE)
            save_config(config, tmp / PRETRAIN_CONFIG_FILE)
            torch.save(
                {**state, "format": STATE_FORMAT, "config": config_to_dict(config)},
                tmp / STATE_FILE,
            )
            write_manifest(tmp, REQUIRED)
    except PipelineError as err:
        kept = newest_valid(out)
        kept_note = f"; {kept.name} is intact" if kept is not None else ""
        raise type(err)(f"{err}{kept_note}") from None
    prune(root, keep)
    return final


def checkpoint_problem(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint, or None when it is."""
    if not _NAME.match(folder.name):
        return "not named step-XXXXXXXX (a temporary or foreign folder)"
    return manifest_problem(folder, REQUIRED)


def list_checkpoints(out: Path) -> list[Path]:
    """Checkpoint folders under OUT/checkpoints by step, oldest first (valid or not)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def newest_valid(out: Path) -> Path | None:
    """The newest valid checkpoint under OUT/checkpoints, logging the ones skipped."""
    for folder in reversed(list_checkpoints(out)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log.warning("skipping checkpoint %s: %s", folder, problem)
    return None


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and leftovers of interrupted writes."""
    for stale in root.glob(".step-*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    folders = list_checkpoints(root.parent)
    for old in folders[: max(len(folders) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_resume(out: Path, resume: str) -> Path | None:
    """The checkpoint to continue from: `auto` (newest valid, or None), `never`, or a folder."""
    if resume == "never":
        if newest_valid(out) is not None:
            raise PipelineError(
                f"{out / CHECKPOINTS}: holds checkpoints of an earlier run; use --resume auto to "
                "continue it, or another -o/--output to start afresh"
            )
        return None
    if resume == "auto":
        return newest_valid(out)
    folder = Path(resume)
    if not folder.is_dir():
        raise PipelineError(f"--resume {resume}: checkpoint folder not found")
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise PipelineError(f"--resume {resume}: not a valid checkpoint ({problem})")
    return folder


def check_model_config(folder: Path, expected: TitansConfig) -> None:
    """Clear error when the checkpoint's model differs from the configured one."""
    try:
        saved = json.loads((folder / CONFIG_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError) as err:
        raise PipelineError(f"{folder / CONFIG_FILE}: unreadable model config ({err})") from None
    wanted = expected.to_dict()
    differences = [
        f"{key} {saved.get(key)!r} in the checkpoint, {wanted.get(key)!r} configured"
        for key in sorted(set(saved) | set(wanted))
        if saved.get(key) != wanted.get(key)
    ]
    if differences:
        raise PipelineError(
            f"{folder}: checkpoint was written for another model config ("
            + "; ".join(differences)
            + "); use its configuration, or another -o/--output to start afresh"
        )


def load_training_state(folder: Path) -> dict[str, Any]:
    """training_state.pt of a valid checkpoint (tensors and plain values only)."""
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise PipelineError(f"{folder / STATE_FILE}: unreadable training state ({err})") from None
    if state.get("format") != STATE_FORMAT:
        raise PipelineError(
            f"{folder / STATE_FILE}: training state format {state.get('format')!r} is not "
            f"supported (expected {STATE_FORMAT})"
        )
    return state
