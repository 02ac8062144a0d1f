"""The optimizer rules pretraining and fine-tuning share: the learning-rate schedule, which
parameters decay, and the moving average of the weights."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
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


class WeightAverage:
    """Exponential moving average of a model's parameters (Polyak averaging), to evaluate and
    save in place of the last weights: it smooths out the step-to-step noise of training.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first n updates, so the
    average does not lean on the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.params = list(model.parameters())
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; its own come back after."""
        own = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, own)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["average"]) != len(self.params):
            raise ValueError(f"{len(state['average'])} averaged tensors for {len(self.params)}")
        self.updates = int(state["updates"])
        with torch.no_grad():
            torch._foreach_copy_(self.average, list(state["average"]))
