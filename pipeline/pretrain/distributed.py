"""Data-parallel training under torchrun: process group from the environment, rank-0-only output.

torchrun (or `python -m torch.distributed.run`) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT. Without them this is a single process (rank 0 of 1) and no process group is created.
Backend: NCCL on CUDA, gloo on CPU. Model code knows nothing of this: the loop wraps the model in
DistributedDataParallel and reduces metrics through the helpers here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pipeline.device import resolve_device
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")

# Rank 0 may spend minutes alone (final evaluation, Markov baseline) while the others wait.
_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is active (world size > 1)."""
        return self.world_size > 1


def init_distributed(device_name: str) -> DistContext:
    """Join the torchrun job described by the environment (or run alone) on the chosen device.

    device_name: "auto" | "cpu" | "cuda" | "cuda:N"; under torchrun with CUDA each process takes
    cuda:LOCAL_RANK.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = _pick_device(device_name, local_rank if world > 1 else None)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=_TIMEOUT)
        log.info("rank %d/%d joined (%s on %s)", rank, world, backend, device)
        if rank != 0:  # one log for the job: the other ranks report errors only
            log.setLevel(logging.ERROR)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise PipelineError(f"environment variable {name}={value!r} is not an integer") from None


def _pick_device(name: str, local_rank: int | None) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
        elif device.index is None:
            device = torch.device("cuda", 0)
    elif device.type != "cpu":
        raise PipelineError(f"--device {name}: only cpu and cuda are supported")
    return device


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op when running alone)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank."""
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum of `values` (any shape) over ranks, returned as a new float64 CPU tensor."""
    total = values.detach().to(torch.float64).clone()
    if not ctx.distributed:
        return total.cpu()
    if dist.get_backend() == "nccl":
        total = total.to(ctx.device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.cpu()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any] | None:
    """Every rank's `obj` as a list on rank 0 (None elsewhere); [obj] when running alone."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True when `flag` is true on at least one rank (e.g. a stop request)."""
    return bool(all_reduce_sum(ctx, torch.tensor([float(flag)])).item() > 0)
