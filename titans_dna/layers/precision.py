"""Working precision of numerically sensitive steps (softmax scores, rotary angles)."""

from __future__ import annotations

import torch


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit types, else the type itself (float64 stays float64 for exact tests)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
