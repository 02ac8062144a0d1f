"""Where a command computes: the device named by --device, and the precision used there."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise PipelineError(
            f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"--device {name}: no CUDA device is available (use --device cpu)")
    return device


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bfloat16 autocast on CUDA (tensor cores); plain float32 on the CPU."""
    return torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )
