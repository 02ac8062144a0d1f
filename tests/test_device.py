"""Devices: names resolve to torch devices, and computing on them flushes subnormal floats."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from pipeline.device import resolve_device
from pipeline.errors import PipelineError
from pipeline.pretrain.distributed import init_distributed

SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


@pytest.fixture
def subnormals_kept() -> Iterator[None]:
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def _flushed() -> bool:
    return float(torch.tensor([SUBNORMAL]) * 1.0) == 0.0


@pytest.mark.parametrize("resolve", [resolve_device, lambda name: init_distributed(name).device])
def test_resolving_a_device_flushes_subnormals(resolve, subnormals_kept: None) -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    assert not _flushed()
    assert resolve("cpu") == torch.device("cpu")
    assert _flushed()


def test_unknown_device_is_one_clear_error() -> None:
    with pytest.raises(PipelineError, match="--device gpu0: not a device"):
        resolve_device("gpu0")
