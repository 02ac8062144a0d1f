"""Sliding-window and segment attention with persistent memory tokens, against dense references."""

from __future__ import annotations

import pytest
import torch

from titans_dna.layers.attention import SegmentAttention, SlidingWindowAttention
from titans_dna.layers.rotary import apply_rotary

D_MODEL, HEADS = 16, 2


def _swa(window: int, n_persistent: int) -> SlidingWindowAttention:
    torch.manual_seed(0)
    return SlidingWindowAttention(D_MODEL, HEADS, window, n_persistent, 10000.0).double()


def _dense_reference(attn, q_in, kv_in, allowed: torch.Tensor) -> torch.Tensor:
    """Scores of every query with every key (rotary at absolute positions) and with the
    persistent keys (unrotated), softmax over the allowed ones.

    allowed: [Tq, Tk] boolean. kv_in positions are 0..Tk-1 except for a [h | x] layout, where
    the caller passes positions explicitly through `allowed` and the doubled input.
    """
    q = attn._heads(attn.q_proj(q_in))
    k, v = attn._kv(kv_in)
    tq, tk = q.shape[2], k.shape[2]
    cos_q, sin_q = attn.rotary.angles(torch.arange(tq), q.dtype)
    key_pos = torch.arange(tk) % tq
    cos_k, sin_k = attn.rotary.angles(key_pos, k.dtype)
    scores = apply_rotary(q, cos_q, sin_q) @ apply_rotary(k, cos_k, sin_k).transpose(-1, -2)
    scores = scores.masked_fill(~allowed, float("-inf"))
    pk, pv = attn._kv(attn.persistent[None])
    scores = torch.cat([(q @ pk.transpose(-1, -2)).expand(q.shape[0], -1, -1, -1), scores], -1)
    weights = (scores / attn.head_dim**0.5).softmax(-1)
    values = torch.cat([pv.expand(q.shape[0], -1, -1, -1), v], 2)
    return attn._merge(weights @ values)


@pytest.mark.parametrize(
    ("window", "n_persistent", "length"), [(8, 3, 37), (8, 0, 37), (64, 2, 20)]
)
def test_sliding_window_matches_dense_masked_attention(window, n_persistent, length) -> None:
    attn = _swa(window, n_persistent)
    x = torch.randn(2, length, D_MODEL, dtype=torch.float64)
    i, j = torch.arange(length)[:, None], torch.arange(length)[None]
    band = (j <= i) & (j > i - window)
    torch.testing.assert_close(attn(x)[0], _dense_reference(attn, x, x, band), rtol=0, atol=1e-12)


def test_sliding_window_streams_with_bounded_cache() -> None:
    attn = _swa(window=8, n_persistent=2)
    x = torch.randn(2, 40, D_MODEL, dtype=torch.float64)
    whole, _ = attn(x)
    for sizes in ([1] * 40, [3, 17, 20], [8, 8, 24]):
        cache, pieces = None, []
        for piece in x.split(sizes, dim=1):
            y, cache = attn(piece, cache)
            pieces.append(y)
            assert cache.keys.shape[2] <= 8 and cache.values.shape[2] <= 8
        torch.testing.assert_close(torch.cat(pieces, 1), whole, rtol=0, atol=1e-12)


def test_sliding_window_is_causal_and_forgets_beyond_window() -> None:
    attn = _swa(window=8, n_persistent=2)
    x = torch.randn(1, 30, D_MODEL, dtype=torch.float64)
    changed = x.clone()
    changed[:, 10] += 1.0
    diff = (attn(x)[0] - attn(changed)[0]).abs().amax(-1)[0]
    assert diff[:10].max() == 0  # nothing before the change moves
    assert (diff[10:18] > 0).all()  # the 8 positions whose window holds token 10
    assert diff[18:].max() == 0  # token 10 has left every later window


def test_segment_attention_matches_dense_reference() -> None:
    torch.manual_seed(0)
    attn = SegmentAttention(D_MODEL, HEADS, 3, 10000.0).double()
    x = torch.randn(2, 12, D_MODEL, dtype=torch.float64)
    h = torch.randn(2, 12, D_MODEL, dtype=torch.float64)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    expected = _dense_reference(attn, x, torch.cat([h, x], 1), torch.cat([causal, causal], 1))
    torch.testing.assert_close(attn(x, h), expected, rtol=0, atol=1e-12)


def test_segment_attention_is_causal_in_tokens_and_readouts() -> None:
    torch.manual_seed(0)
    attn = SegmentAttention(D_MODEL, HEADS, 2, 10000.0).double()
    x = torch.randn(1, 10, D_MODEL, dtype=torch.float64)
    h = torch.randn(1, 10, D_MODEL, dtype=torch.float64)
    base = attn(x, h)
    bump = torch.zeros_like(x)
    bump[:, 6] = 1.0
    for changed in (attn(x + bump, h), attn(x, h + bump)):
        diff = (changed - base).abs().amax(-1)[0]
        assert diff[:6].max() == 0 and diff[6:].min() > 0
