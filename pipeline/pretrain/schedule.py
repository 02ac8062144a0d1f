"""Schedules as pure functions of the optimizer step: learning rate, and sequence-length warmup.

Sequence-length warmup (HyenaDNA): training starts at `seqlen_warmup_start` tokens per window and
the context doubles every `seqlen_warmup_steps` steps until it reaches `train.context`; the
number of tokens per step stays fixed, so the batch grows by the same factor the window shrinks.
"""

from __future__ import annotations

import math

from pipeline.pretrain.config import OptimSection, TrainSection


def lr_factor(step: int, optim: OptimSection, max_steps: int) -> float:
    """Multiplier of optim.lr at `step`: linear warmup from 0, then cosine decay to min_lr_ratio."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    span = max(max_steps - optim.warmup_steps, 1)
    progress = min((step - optim.warmup_steps) / span, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine


def stage(step: int, train: TrainSection) -> tuple[int, int]:
    """(context, global batch size in windows) used at optimizer step `step`."""
    start = train.seqlen_warmup_start
    if start is None or train.seqlen_warmup_steps == 0:
        return train.context, train.batch_size
    context = min(start * 2 ** (step // train.seqlen_warmup_steps), train.context)
    return context, train.batch_size * (train.context // context)


def tokens_per_step(train: TrainSection) -> int:
    """Tokens scored per optimizer step (the same at every stage)."""
    return train.context * train.batch_size
