"""Keep freed memory in the process (glibc malloc) instead of returning it to the system.

PyTorch's CPU tensors come from malloc, and glibc serves large requests (from 128 KiB, rising
to 32 MiB) with a fresh mmap that free() unmaps again. A training step allocates and frees the
same large activations every step, so at long context every step pays a page fault per 4 KiB
page touched (a NeuralMemory layer's forward+backward at 64k tokens runs 1.5x slower without
this; docs/benchmarks.md). Serving them from the heap and trimming it only above 1 GiB of free
memory at its top removes that cost; the price is up to that much freed memory kept resident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30
DISABLE_ENV = "TITANS_DNA_SYSTEM_MALLOC"


def keep_freed_memory() -> bool:
    """Tune glibc malloc as described above; True when applied.

    A no-op (False) off Linux, without glibc, or when the environment variable
    TITANS_DNA_SYSTEM_MALLOC is set to anything but "" or "0".
    """
    if os.environ.get(DISABLE_ENV, "0") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):  # musl and other C libraries
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
