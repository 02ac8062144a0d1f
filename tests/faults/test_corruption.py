"""Corrupted weights and checkpoints are refused with one line, never used silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.manifest import write_manifest

from .conftest import cli

LAMBDA = "genomes/lambda_phage.fa.gz"


def test_nan_weights_are_refused(checkpoint: Path, shared_data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    run = cli("embed", shared_data / LAMBDA, "--checkpoint", broken, "-o", tmp_path / "e.h5")
    run.one_line_error("corrupt weights", "NaN")
    assert not (tmp_path / "e.h5").exists()


def test_a_checkpoint_that_does_not_match_its_manifest(
    checkpoint: Path, shared_data: Path, tmp_path: Path
) -> None:
    step = tmp_path / "step"
    shutil.copytree(checkpoint, step)
    write_manifest(step, ["config.json", "model.safetensors"])
    weights = step / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x00\x00\xc0\x7f" * 2  # the last values become NaN; the header stays intact
    weights.write_bytes(bytes(data))
    run = cli("embed", shared_data / LAMBDA, "--checkpoint", step, "-o", tmp_path / "e.h5")
    run.one_line_error("corrupt checkpoint", "model.safetensors does not match the manifest")
    assert json.loads((step / "manifest.json").read_text())["files"]
