"""Causal depthwise 1-D convolution over time, with a streaming state."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalDepthwiseConv1d(nn.Module):
    """y_t = b + sum_{j<K} w_j * x_{t-K+1+j} per channel; inputs before the start are the state
    (the previous K-1 inputs) or zeros.

    forward(x [B, T, C], state [B, C, K-1] | None) -> (y [B, T, C], state [B, C, K-1]).
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform init with the fan-in of one channel (what nn.Conv1d does for groups=C)."""
        bound = 1.0 / math.sqrt(self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        history = self.kernel_size - 1
        if state is None:
            state = x.new_zeros(batch, self.channels, history)
        padded = torch.cat([state.to(x.dtype), x.transpose(1, 2)], dim=2)  # [B, C, K-1+T]
        y = F.conv1d(padded, self.weight.to(x.dtype), self.bias.to(x.dtype), groups=self.channels)
        new_state = padded[:, :, padded.shape[2] - history :]
        return y.transpose(1, 2), new_state
