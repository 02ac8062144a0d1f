"""The moving average of the weights: its update rule, and evaluating with it in place."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.optim import WeightAverage


def test_average_follows_the_ramped_decay_and_swaps_in_and_back() -> None:
    model = nn.Linear(3, 2)
    start = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # decay min(0.5, 2 / 11): 9/11 of the way to the new weights
    want = [s + 9 / 11 for s in start]
    assert all(torch.allclose(a, w) for a, w in zip(average.average, want, strict=True))
    trained = [p.detach().clone() for p in model.parameters()]
    with average.applied():
        assert all(torch.allclose(p, w) for p, w in zip(model.parameters(), want, strict=True))
    assert all(torch.equal(p, t) for p, t in zip(model.parameters(), trained, strict=True))


def test_state_round_trip_and_mismatch() -> None:
    model = nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    average.update()
    other = WeightAverage(nn.Linear(3, 2), decay=0.9)
    other.load_state_dict(average.state_dict())
    assert other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.average, average.average, strict=True))
    with pytest.raises(ValueError, match="2 averaged tensors for 4"):
        WeightAverage(nn.Sequential(model, nn.Linear(2, 2)), 0.9).load_state_dict(
            average.state_dict()
        )
