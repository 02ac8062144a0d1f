"""The token-by-token neural memory (the definition), its closed-form surprise, state, dispatch."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from titans_dna.ops.memory import IMPLS, MemoryState, neural_memory, resolve_impl
from titans_dna.ops.memory.activations import get_activation
from titans_dna.ops.memory.naive import memory_apply, memory_grads, naive_memory


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["silu", "gelu", "relu"])
@pytest.mark.parametrize("residual", [False, True])
def test_closed_form_surprise_equals_autograd(memory_case, depth, activation, residual):
    case = memory_case(depth=depth, seed=depth)
    act = get_activation(activation)
    weights = tuple(w.requires_grad_() for w in case.state.weights)
    k, v = case.k[:, 3], case.v[:, 3]
    grads, norm_sq = memory_grads(weights, k, v, act, residual)

    def loss_of(ws):
        return (memory_apply(ws, k, act, residual)[0] - v).square().sum()

    expected = torch.autograd.grad(loss_of(weights), weights)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    want_sq = sum(g.square().sum((-1, -2)) for g in expected)
    torch.testing.assert_close(norm_sq, want_sq, rtol=1e-12, atol=1e-12)


def _reference_recurrence(case, chunk_size, max_norm, activation="silu"):
    """The recurrence with surprises from torch.func.grad, per batch element and head."""
    act = get_activation(activation)
    batch, length, heads, _ = case.q.shape
    ys = torch.empty_like(case.q)
    ends_w = [torch.empty_like(w) for w in case.state.weights]
    ends_s = [torch.empty_like(s) for s in case.state.momentum]

    def apply(ws, x):
        h = x
        for i, w in enumerate(ws):
            h = w @ h if i == len(ws) - 1 else act.fn(w @ h)
        return h

    def loss(ws, k, v):
        return (apply(ws, k) - v).square().sum()

    for b in range(batch):
        for h in range(heads):
            ws = [w[b, h] for w in case.state.weights]
            ss = [s[b, h] for s in case.state.momentum]
            for t in range(length):
                if t % chunk_size == 0:
                    anchor = list(ws)
                us = grad(loss)(anchor, case.k[b, t, h], case.v[b, t, h])
                norm = torch.sqrt(sum(u.square().sum() for u in us))
                clip = 1.0 if max_norm is None else min(1.0, max_norm / norm.item())
                lr = case.theta[b, t, h] * clip
                ss = [case.eta[b, t, h] * s - lr * u for s, u in zip(ss, us, strict=True)]
                ws = [(1 - case.alpha[b, t, h]) * w + s for w, s in zip(ws, ss, strict=True)]
                ys[b, t, h] = apply(ws, case.q[b, t, h])
            for i in range(len(ws)):
                ends_w[i][b, h], ends_s[i][b, h] = ws[i], ss[i]
    return ys, ends_w, ends_s


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize("max_norm", [None, 0.3])
def test_naive_equals_recurrence_with_autograd_surprise(memory_case, depth, chunk_size, max_norm):
    case = memory_case(batch=2, length=9, heads=2, dim=4, depth=depth, hidden=6)
    y, end = naive_memory(*case[:6], case.state, chunk_size=chunk_size, max_surprise_norm=max_norm)
    ys, ends_w, ends_s = _reference_recurrence(case, chunk_size, max_norm)
    torch.testing.assert_close(y, ys, rtol=1e-12, atol=1e-12)
    for got, want in zip((*end.weights, *end.momentum), (*ends_w, *ends_s), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("max_norm", [0.01, 100.0])
def test_clipping_bounds_the_first_update(memory_case, max_norm):
    # one token from zero momentum: S_1 = -θ c u, so ‖S_1‖_F = θ min(‖u‖_F, max_norm)
    case = memory_case(length=1, depth=2, initial="zero_momentum")
    _, end = naive_memory(*case[:6], case.state, max_surprise_norm=max_norm)
    step = torch.sqrt(sum(s.square().sum((-1, -2)) for s in end.momentum))
    act = get_activation("silu")
    _, norm_sq = memory_grads(case.state.weights, case.k[:, 0], case.v[:, 0], act, False)
    expected = case.theta[:, 0] * norm_sq.sqrt().clamp(max=max_norm)
    torch.testing.assert_close(step, expected, rtol=1e-12, atol=1e-14)
    assert (norm_sq.sqrt() > 0.01).all() and (norm_sq.sqrt() < 100).all()


def test_dispatch_naive_equals_direct_call(memory_case):
    case = memory_case(length=11, depth=2)
    y, end = neural_memory(*case[:6], case.state, chunk_size=4, impl="naive", residual=True)
    y_ref, end_ref = naive_memory(*case[:6], case.state, chunk_size=4, residual=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(end.weights, end_ref.weights, rtol=0, atol=0)


def test_initial_state_expands_parameters_and_carries_gradients():
    params = [torch.randn(3, 6, 4, requires_grad=True), torch.randn(3, 4, 6, requires_grad=True)]
    state = MemoryState.initial(params, batch_size=2)
    assert state.depth == 2 and state.batch_size == 2 and state.num_heads == 3
    assert (
        state.weights[0].shape == (2, 3, 6, 4)
        and state.weights[0].data_ptr() == params[0].data_ptr()
    )
    assert all((s == 0).all() and s.shape == w.shape for w, s in zip(*state, strict=True))
    q = torch.nn.functional.normalize(torch.randn(2, 5, 3, 4), dim=-1)
    gates = torch.rand(2, 5, 3)
    y, _ = neural_memory(q, q, q, gates, gates, gates, state, chunk_size=2)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_state_helpers():
    w = torch.randn(2, 1, 3, 3, requires_grad=True)
    state = MemoryState((w * 2,), (w * 3,))
    detached = state.detach()
    assert not detached.weights[0].requires_grad and not detached.momentum[0].requires_grad
    assert state.to(torch.float64).momentum[0].dtype == torch.float64
    picked = state.select(1)
    assert picked.batch_size == 1
    torch.testing.assert_close(picked.weights[0], state.weights[0][1:2])


def _inputs(batch=1, length=3, heads=2, dim=4, dtype=torch.float32):
    q = torch.nn.functional.normalize(torch.randn(batch, length, heads, dim, dtype=dtype), dim=-1)
    gates = torch.rand(batch, length, heads, dtype=dtype)
    state = MemoryState.initial([torch.randn(heads, dim, dim)], batch)
    return q, gates, state


def test_dispatch_rejects_bad_arguments():
    q, g, state = _inputs()
    with pytest.raises(ValueError, match="unknown neural memory impl"):
        neural_memory(q, q, q, g, g, g, state, impl="cuda")
    with pytest.raises(ValueError, match="k shape"):
        neural_memory(q, q[:, :2], q, g, g, g, state)
    with pytest.raises(ValueError, match="theta must be"):
        neural_memory(q, q, q, g[..., :1], g, g, state)
    with pytest.raises(ValueError, match="weights\\[0\\]"):
        neural_memory(q, q, q, g, g, g, MemoryState.initial([torch.randn(2, 4, 5)], 1))
    with pytest.raises(ValueError, match="must output 4"):
        neural_memory(q, q, q, g, g, g, MemoryState.initial([torch.randn(2, 5, 4)], 1))
    with pytest.raises(ValueError, match="chunk_size"):
        neural_memory(q, q, q, g, g, g, state, chunk_size=0)
    with pytest.raises(ValueError, match="max_surprise_norm"):
        neural_memory(q, q, q, g, g, g, state, max_surprise_norm=0.0)
    with pytest.raises(ValueError, match="activation"):
        neural_memory(q, q, q, g, g, g, state, activation="tanh")
    assert set(IMPLS) == {"auto", "naive", "chunk", "triton"}
    assert resolve_impl("auto", torch.device("cpu")) == "chunk"


def test_dtypes_and_empty_sequence():
    q, g, state = _inputs(dtype=torch.bfloat16)
    y, end = neural_memory(q, q, q, g, g, g, state)
    assert y.dtype == torch.bfloat16 and end.weights[0].dtype == torch.float32
    y, end = neural_memory(q, q, q, g, g, g, state.to(torch.float64))
    assert y.dtype == torch.bfloat16 and end.weights[0].dtype == torch.float64
    y, end = neural_memory(q[:, :0], q[:, :0], q[:, :0], g[:, :0], g[:, :0], g[:, :0], state)
    assert y.shape == (1, 0, 2, 4)
    torch.testing.assert_close(end.weights, state.weights)
