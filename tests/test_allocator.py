"""glibc malloc tuning of the CLI: freed activations stay in the process for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
import textwrap

import pytest

from pipeline.allocator import DISABLE_ENV, keep_freed_memory

# Allocate, touch and free a block of argv[2] MiB with malloc; print the bytes malloc then holds
# free for reuse (mallinfo2's fordblks): the block itself when kept, next to nothing when it was
# unmapped or trimmed off the heap's top.
_FREE_HELD = textwrap.dedent(
    """
    import ctypes, ctypes.util, sys
    from pipeline.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    size = int(sys.argv[2]) << 20
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    print(libc.mallinfo2().fordblks)
    """
)


def _free_bytes_held(mode: str, mib: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FREE_HELD, mode, str(mib)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _has_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return (
        sys.platform.startswith("linux")
        and name is not None
        and hasattr(ctypes.CDLL(name), "mallinfo2")
    )


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 malloc only")
def test_a_freed_large_block_is_kept_for_reuse():
    mib = 64
    assert _free_bytes_held("default", mib) < (mib << 20) // 2  # unmapped by free()
    assert _free_bytes_held("tuned", mib) >= mib << 20


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 malloc only")
def test_the_heap_is_never_trimmed():
    # a long-context step frees gigabytes at the heap's top at once; trimming them would make
    # the next step fault every page in again
    mib = 1536
    assert _free_bytes_held("tuned", mib) >= mib << 20


def test_environment_variable_disables_it(monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert keep_freed_memory() is False
