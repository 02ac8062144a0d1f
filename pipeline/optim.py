"""The optimizer rules pretraining and fine-tuning share: the learning-rate schedule and which
parameters decay."""

from __future__ import annotations

import math

from torch import nn

SCHEDULES = ("cosine", "linear")


def warmup_then_decay(
    done: float, warmup: float, *, shape: str = "cosine", floor: float = 0.0
) -> float:
    """Multiplier of the peak learning rate once `done` of the schedule has passed.

    done and warmup are fractions of the whole schedule: a linear warmup to 1 over the first
    `warmup`, then a cosine or linear decay that reaches `floor` at the end.
    """
    if shape not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {shape!r}")
    if done < warmup:
        return done / warmup
    rest = min((done - warmup) / max(1.0 - warmup, 1e-12), 1.0)
    decay = 0.5 * (1.0 + math.cos(math.pi * rest)) if shape == "cosine" else 1.0 - rest
    return floor + (1.0 - floor) * decay


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices only; embeddings, norm scales, biases
    and gate scalars (every parameter of fewer than two dimensions) are exempt."""
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            exempt = parameter.ndim < 2 or "embedding" in name
            (plain if exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
