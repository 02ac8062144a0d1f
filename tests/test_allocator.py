"""glibc malloc tuning of the CLI: freed activations stay in the process (no page faults)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pipeline.allocator import DISABLE_ENV, keep_freed_memory

# Allocate, touch and free a 64 MiB tensor a few times; print the page faults of the last round.
_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from pipeline.allocator import keep_freed_memory
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 << 20).sum()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_freed_memory_is_reused_without_page_faults():
    pages = (64 << 20) // 4096
    assert _faults("default") > pages // 2  # each round maps fresh pages
    assert _faults("tuned") < pages // 20


def test_environment_variable_disables_it(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert keep_freed_memory() is False
