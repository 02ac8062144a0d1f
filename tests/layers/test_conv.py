"""Causal depthwise convolution: definition, causality and streaming."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from titans_dna.layers.conv import CausalDepthwiseConv1d


def _conv(channels: int = 6, kernel: int = 4) -> CausalDepthwiseConv1d:
    torch.manual_seed(0)
    conv = CausalDepthwiseConv1d(channels, kernel).double()
    torch.nn.init.normal_(conv.bias)
    return conv


def test_matches_left_padded_depthwise_conv() -> None:
    conv = _conv()
    x = torch.randn(2, 20, 6, dtype=torch.float64)
    y, _ = conv(x)
    padded = F.pad(x.transpose(1, 2), (3, 0))
    expected = F.conv1d(padded, conv.weight, conv.bias, groups=6).transpose(1, 2)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-14)


def test_output_at_t_ignores_later_inputs() -> None:
    conv = _conv()
    x = torch.randn(1, 12, 6, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7] += 1.0
    y, y2 = conv(x)[0], conv(changed)[0]
    torch.testing.assert_close(y[:, :7], y2[:, :7], rtol=0, atol=0)
    assert (y[:, 7] != y2[:, 7]).all()


def test_streaming_any_split_equals_whole() -> None:
    conv = _conv()
    x = torch.randn(2, 25, 6, dtype=torch.float64)
    whole, end = conv(x)
    for sizes in ([1] * 25, [2, 3, 20], [13, 12]):
        state, pieces = None, []
        for piece in x.split(sizes, dim=1):
            y, state = conv(piece, state)
            pieces.append(y)
        torch.testing.assert_close(torch.cat(pieces, 1), whole, rtol=0, atol=1e-14)
        torch.testing.assert_close(state, end, rtol=0, atol=0)
    assert end.shape == (2, 6, 3)


def test_kernel_one_has_empty_state() -> None:
    conv = _conv(kernel=1)
    y, state = conv(torch.randn(1, 5, 6, dtype=torch.float64))
    assert y.shape == (1, 5, 6) and state.shape == (1, 6, 0)
