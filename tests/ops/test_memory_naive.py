"""The token-by-token neural memory (the definition), its closed-form surprise, state, dispatch."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

from titans_dna.ops.memory import IMPLS, UPDATES, MemoryState, neural_memory, resolve_impl
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
    grads, norm_sq, inputs = memory_grads(weights, k, v, act, residual)
    assert len(inputs) == depth and torch.equal(inputs[0], k)

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
    y, end = naive_memory(
        *case[:6], case.state, chunk_size=chunk_size, max_surprise_norm=max_norm, update="paper"
    )
    ys, ends_w, ends_s = _reference_recurrence(case, chunk_size, max_norm)
    torch.testing.assert_close(y, ys, rtol=1e-12, atol=1e-12)
    for got, want in zip((*end.weights, *end.momentum), (*ends_w, *ends_s), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _product(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Π_{lo<j≤hi} x_j (1 for an empty range)."""
    return torch.prod(x[lo + 1 : hi + 1]) if hi > lo else torch.ones((), dtype=x.dtype)


def _decay(keep: torch.Tensor, eta: torch.Tensor, i: int, t: int) -> torch.Tensor:
    """D_{t,i} = Σ_{s=i..t} Π_{s<j≤t}(1−α_j) Π_{i<j≤s} η_j."""
    return sum(_product(keep, s, t) * _product(eta, i, s) for s in range(i, t + 1))


def _reference_normalized(case, chunk_size, max_norm, activation="silu"):
    """The normalized update written from its closed form, for one batch element and head:
    W_t = β_t W_0 + γ_t S_0 − n_t Σ_{i≤t} D_{t,i} θ_i c_i u_i with explicit gate products and
    n_t = 1 / (1 + Σ_l ‖Σ_{i≤t} 2θ_i c_i D_{t,i} h_{l,i} h_{l,i}ᵀ‖_F); surprises by autograd."""
    act = get_activation(activation)
    length = case.q.shape[1]
    ys = torch.empty_like(case.q)

    def layers(ws, x):
        inputs, h = [], x
        for i, w in enumerate(ws):
            inputs.append(h)
            h = w @ h if i == len(ws) - 1 else act.fn(w @ h)
        return h, inputs

    def loss(ws, k, v):
        return (layers(ws, k)[0] - v).square().sum()

    ws = [w[0, 0] for w in case.state.weights]
    ss = [s[0, 0] for s in case.state.momentum]
    keep, eta = 1 - case.alpha[0, :, 0], case.eta[0, :, 0]
    k, v, q, theta = case.k[0, :, 0], case.v[0, :, 0], case.q[0, :, 0], case.theta[0, :, 0]
    for start in range(0, length, chunk_size):
        anchor, w0, s0 = list(ws), list(ws), list(ss)
        surprises, rates, inputs = {}, {}, {}
        for i in range(start, min(start + chunk_size, length)):
            surprises[i] = grad(loss)(anchor, k[i], v[i])
            norm = torch.sqrt(sum(u.square().sum() for u in surprises[i]))
            rates[i] = theta[i] * (1.0 if max_norm is None else min(1.0, max_norm / norm.item()))
            inputs[i] = layers(anchor, k[i])[1]
        for t in surprises:
            past = range(start, t + 1)
            decay = {i: _decay(keep, eta, i, t) for i in past}
            spread = 0.0
            for layer in range(len(ws)):
                outer = [torch.outer(inputs[i][layer], inputs[i][layer]) for i in past]
                curvature = sum(
                    2 * rates[i] * decay[i] * x for i, x in zip(past, outer, strict=True)
                )
                spread = spread + torch.linalg.matrix_norm(curvature)
            n = 1 / (1 + spread)
            gamma = sum(_product(keep, s, t) * _product(eta, start - 1, s) for s in past)
            beta, rho = _product(keep, start - 1, t), _product(eta, start - 1, t)
            ws = [
                beta * w
                + gamma * s
                - n * sum(decay[i] * rates[i] * surprises[i][layer] for i in past)
                for layer, (w, s) in enumerate(zip(w0, s0, strict=True))
            ]
            ss = [
                rho * s
                - n * sum(_product(eta, i, t) * rates[i] * surprises[i][layer] for i in past)
                for layer, s in enumerate(s0)
            ]
            ys[0, t, 0] = layers(ws, q[t])[0]
    return ys, ws, ss


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize("max_norm", [None, 0.3])
def test_normalized_update_equals_its_closed_form(memory_case, depth, chunk_size, max_norm):
    case = memory_case(batch=1, length=9, heads=1, dim=4, depth=depth, hidden=6, lr=2.0)
    y, end = naive_memory(*case[:6], case.state, chunk_size=chunk_size, max_surprise_norm=max_norm)
    ys, ws, ss = _reference_normalized(case, chunk_size, max_norm)
    torch.testing.assert_close(y, ys, rtol=1e-12, atol=1e-12)
    for got, want in zip((*end.weights, *end.momentum), (*ws, *ss), strict=True):
        torch.testing.assert_close(got[0, 0], want, rtol=1e-12, atol=1e-12)


def test_normalized_update_is_the_proximal_step_of_one_token():
    # linear memory, no momentum or forgetting: W_1 = W_0 − 2θ/(1 + 2θ‖k‖²) (W_0 k − v) kᵀ, so the
    # error shrinks by 1 / (1 + 2θ) for a unit key and never overshoots, however large θ
    gen = torch.Generator().manual_seed(5)
    k = torch.randn(1, 1, 1, 6, generator=gen, dtype=torch.float64)
    k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(1, 1, 1, 6, generator=gen, dtype=torch.float64)
    w0 = torch.randn(1, 1, 6, 6, generator=gen, dtype=torch.float64)
    state = MemoryState((w0,), (torch.zeros_like(w0),))
    zero = torch.zeros(1, 1, 1, dtype=torch.float64)
    for theta in (0.01, 1.0, 1e6):
        lr = torch.full_like(zero, theta)
        _, end = naive_memory(k, k, v, lr, zero, zero, state)
        before = w0[0, 0] @ k[0, 0, 0] - v[0, 0, 0]
        after = end.weights[0][0, 0] @ k[0, 0, 0] - v[0, 0, 0]
        torch.testing.assert_close(after, before / (1 + 2 * theta), rtol=1e-12, atol=1e-12)


def test_normalized_update_stays_bounded_on_coherent_keys():
    # one key repeated over a chunk: the paper's chunked step is 2θb times the error and
    # overshoots without bound; the normalized step stays below one along the key
    gen = torch.Generator().manual_seed(2)
    length, dim = 64, 8
    k = torch.randn(1, 1, 1, dim, generator=gen, dtype=torch.float64)
    k = torch.nn.functional.normalize(k, dim=-1).expand(1, length, 1, dim)
    v = torch.randn(1, 1, 1, dim, generator=gen, dtype=torch.float64).expand(1, length, 1, dim)
    w0 = torch.zeros(1, 1, dim, dim, dtype=torch.float64)
    state = MemoryState((w0,), (torch.zeros_like(w0),))
    theta = torch.full((1, length, 1), 0.5, dtype=torch.float64)
    eta, alpha = torch.zeros_like(theta), torch.zeros_like(theta)
    shrink = {}  # ‖M(k) − v‖ at the chunk's end over its start
    for update in UPDATES:
        _, end = naive_memory(k, k, v, theta, eta, alpha, state, chunk_size=length, update=update)
        error = end.weights[0][0, 0] @ k[0, 0, 0] - v[0, 0, 0]
        shrink[update] = (error.norm() / v[0, 0, 0].norm()).item()
    assert shrink["paper"] == pytest.approx(63)  # |1 − 2θb|
    assert shrink["normalized"] == pytest.approx(1 / 65)  # n_b = 1 / (1 + 2θb)


def test_normalized_update_agrees_with_the_paper_for_small_steps(memory_case, rel_err):
    case = memory_case(length=40, depth=2, lr=1e-4)
    kw = {"chunk_size": 16, "max_surprise_norm": 1.0}
    paper = naive_memory(*case[:6], case.state, update="paper", **kw)[1].weights[0]
    normalized = naive_memory(*case[:6], case.state, **kw)[1].weights[0]
    start = case.state.weights[0]
    # the updates differ by a relative O(θ) amount
    assert rel_err(normalized - start, paper - start) < 1e-2


@pytest.mark.parametrize("max_norm", [0.01, 100.0])
def test_clipping_bounds_the_first_update(memory_case, max_norm):
    # one token from zero momentum: S_1 = -θ c u, so ‖S_1‖_F = θ min(‖u‖_F, max_norm)
    case = memory_case(length=1, depth=2, initial="zero_momentum")
    _, end = naive_memory(*case[:6], case.state, max_surprise_norm=max_norm, update="paper")
    step = torch.sqrt(sum(s.square().sum((-1, -2)) for s in end.momentum))
    act = get_activation("silu")
    _, norm_sq, _ = memory_grads(case.state.weights, case.k[:, 0], case.v[:, 0], act, False)
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
    with pytest.raises(ValueError, match="unknown neural memory update"):
        neural_memory(q, q, q, g, g, g, state, update="exact")
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
