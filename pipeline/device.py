"""Where a command computes: the device named by --device, and the precision used there."""

from __future__ import annotations

import torch

from pipeline.errors import PipelineError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`; from here on the CPU
    flushes subnormal floats (`flush_subnormals`)."""
    flush_subnormals()
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


def flush_subnormals() -> bool:
    """Compute with subnormal floats (below 1.2e-38 in float32) as zero on the CPU; True when
    the CPU supports it.

    The memory's gate products over a chunk (momentum and decay powers) fall into the subnormal
    range once training has annealed, and x86 arithmetic on subnormals is many times slower: a
    chr20 model after its learning rate had decayed trained at 4.4k tokens/s instead of 8.5k,
    and its forward+backward took 1.1-1.25x longer than with them flushed (docs/benchmarks.md).
    No result of ours depends on a value that small.
    """
    return torch.set_flush_denormal(True)
