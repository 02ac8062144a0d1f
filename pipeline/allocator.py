"""Keep freed memory in the process (glibc malloc) instead of returning it to the system.

PyTorch's CPU tensors come from malloc, and glibc serves large requests (from 128 KiB, rising
to 32 MiB) with a fresh mmap that free() unmaps again, and trims the heap's free top above
128 KiB. A training step allocates and frees the same large activations every step, so at long
context every step would pay a page fault per 4 KiB page touched. Serving every request from
the heap and never trimming it removes that cost (a NeuralMemory layer's forward+backward at 64k
tokens: 1.6x faster than with glibc's defaults; trimming only above 1 GiB still re-faulted 2 GB
a step there; docs/benchmarks.md). The price: the process keeps its peak heap resident until it
exits, which for a training or embedding run is the memory its next step needs anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
NEVER_TRIM = -1  # mallopt(3): -1 disables trimming completely
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
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, NEVER_TRIM))
