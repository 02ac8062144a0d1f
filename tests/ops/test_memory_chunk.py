"""The chunked dual form against the token-by-token definition (float64), gradients, streaming,
extreme gates, long sequences and low-precision inputs."""

from __future__ import annotations

import pytest
import torch

import titans_dna.ops.memory.chunk as chunk_module
from titans_dna.ops.memory import UPDATES, MemoryState, neural_memory
from titans_dna.ops.memory.chunk import chunk_memory, segment_sums


def _run(case, impl: str, **kw) -> tuple[torch.Tensor, MemoryState]:
    return neural_memory(*case[:6], case.state, impl=impl, **kw)


def _assert_same(got, want, rel_err, tol=1e-11):
    (y, end), (y_ref, end_ref) = got, want
    assert rel_err(y, y_ref) < tol
    for a, b in zip(
        (*end.weights, *end.momentum), (*end_ref.weights, *end_ref.momentum), strict=True
    ):
        assert rel_err(a, b) < tol


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 63, 65, 200])
@pytest.mark.parametrize("chunk_size", [1, 16, 64])
def test_chunk_equals_naive(memory_case, rel_err, depth, length, chunk_size, update):
    # each case runs the four combinations of initial state (random / zero momentum) and clipping
    for initial in ("random", "zero_momentum"):
        for max_norm in (None, 0.3):
            case = memory_case(
                batch=1, length=length, depth=depth, initial=initial, seed=length + depth, lr=0.2
            )
            kw = {"chunk_size": chunk_size, "max_surprise_norm": max_norm, "update": update}
            _assert_same(_run(case, "chunk", **kw), _run(case, "naive", **kw), rel_err)


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("activation", ["silu", "gelu", "relu"])
@pytest.mark.parametrize("residual", [False, True])
def test_chunk_equals_naive_activations_and_residual(
    memory_case, rel_err, activation, residual, update
):
    case = memory_case(length=45, depth=2)
    kw = {"chunk_size": 16, "max_surprise_norm": 0.5, "activation": activation}
    kw.update(residual=residual, update=update)
    _assert_same(_run(case, "chunk", **kw), _run(case, "naive", **kw), rel_err)
    grads = {}
    for impl in ("chunk", "naive"):
        leaves = [x.clone().requires_grad_() for x in case.leaves()]
        y, end = _run(case.from_leaves(leaves, 2), impl, **kw)
        _loss(y, end, torch.Generator().manual_seed(3)).backward()
        grads[impl] = [x.grad for x in leaves]
    for got, want in zip(grads["chunk"], grads["naive"], strict=True):
        assert rel_err(got, want) < 1e-10


@pytest.mark.parametrize("update", UPDATES)
def test_chunk_size_one_is_the_token_recurrence(memory_case, rel_err, update):
    # the plain recurrence differs from the chunked semantics: chunk 1 must not equal chunk 16
    case = memory_case(length=40, depth=2)
    kw = {"max_surprise_norm": 1.0, "update": update}
    plain = _run(case, "naive", chunk_size=1, **kw)
    _assert_same(_run(case, "chunk", chunk_size=1, **kw), plain, rel_err)
    chunked = _run(case, "chunk", chunk_size=16, **kw)
    assert rel_err(chunked[0], plain[0]) > 1e-3


def test_updates_differ(memory_case, rel_err):
    case = memory_case(length=40, depth=2, lr=1.0)
    kw = {"chunk_size": 16, "max_surprise_norm": 1.0}
    paper, normalized = (_run(case, "chunk", update=u, **kw)[0] for u in ("paper", "normalized"))
    assert rel_err(normalized, paper) > 1e-2


def _loss(y: torch.Tensor, end: MemoryState, gen: torch.Generator) -> torch.Tensor:
    """A random linear functional of the output and the end state."""
    total = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    for x in (*end.weights, *end.momentum):
        total = total + (x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum()
    return total


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("max_norm", [None, 0.3])
def test_gradients_equal_naive(memory_case, rel_err, depth, max_norm, update):
    case = memory_case(length=37, depth=depth, lr=0.3)
    grads = {}
    for impl in ("chunk", "naive"):
        leaves = [x.clone().requires_grad_() for x in case.leaves()]
        run = case.from_leaves(leaves, depth)
        y, end = _run(run, impl, chunk_size=16, max_surprise_norm=max_norm, update=update)
        _loss(y, end, torch.Generator().manual_seed(1)).backward()
        grads[impl] = [x.grad for x in leaves]
    names = ["q", "k", "v", "theta", "eta", "alpha"] + ["W"] * depth + ["S"] * depth
    for name, got, want in zip(names, grads["chunk"], grads["naive"], strict=True):
        assert want.abs().sum() > 0, name
        assert rel_err(got, want) < 1e-10, name


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("depth", [1, 2])
def test_gradcheck(memory_case, depth, update):
    case = memory_case(batch=1, length=5, heads=1, dim=3, depth=depth, hidden=4, seed=3)
    leaves = [x.clone().requires_grad_() for x in case.leaves()]

    def fn(*xs):
        run = case.from_leaves(list(xs), depth)
        y, end = chunk_memory(
            *run[:6], run.state, chunk_size=2, max_surprise_norm=0.5, update=update
        )
        return y, *end.weights, *end.momentum

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


def test_streaming_in_chunk_aligned_pieces_equals_one_pass(memory_case, rel_err):
    case = memory_case(length=157, depth=2)
    kw = {"chunk_size": 16, "max_surprise_norm": 0.5}
    y_full, end_full = _run(case, "chunk", **kw)
    state, ys, start = case.state, [], 0
    for piece in (48, 64, 45):
        part = [x[:, start : start + piece] for x in case[:6]]
        y, state = neural_memory(*part, state, **kw)
        ys.append(y)
        start += piece
    _assert_same((torch.cat(ys, 1), state), (y_full, end_full), rel_err, tol=1e-13)


def test_windows_of_chunks_equal_naive(memory_case, rel_err, monkeypatch):
    # long inputs run in windows of WINDOW_MATRICES (chunk, batch*head) matrices: shrink it to
    # two chunks of 2*2 matrices per window, so that 75 tokens in chunks of 16 cross 3 windows
    monkeypatch.setattr(chunk_module, "WINDOW_MATRICES", 8)
    case = memory_case(batch=2, heads=2, length=75, depth=2)
    kw = {"chunk_size": 16, "max_surprise_norm": 0.5}
    results = {}
    for impl in ("chunk", "naive"):
        leaves = [x.clone().requires_grad_() for x in case.leaves()]
        y, end = _run(case.from_leaves(leaves, 2), impl, **kw)
        _loss(y, end, torch.Generator().manual_seed(2)).backward()
        results[impl] = (y, end, [x.grad for x in leaves])
    _assert_same(results["chunk"][:2], results["naive"][:2], rel_err)
    for got, want in zip(results["chunk"][2], results["naive"][2], strict=True):
        assert rel_err(got, want) < 1e-10


def _extreme(case):
    theta, eta, alpha = case.theta.clone(), case.eta.clone(), case.alpha.clone()
    alpha[:, ::5], alpha[:, 1::5], alpha[:, 2::6] = 1.0, 0.0, 1 - 1e-12
    eta[:, ::3], eta[:, 1::4] = 1 - 1e-12, 0.0
    theta[:, ::2] = 1e3
    return case._replace(theta=theta, eta=eta, alpha=alpha)


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("depth", [1, 2])
def test_extreme_gates_equal_naive_and_stay_finite(memory_case, rel_err, depth, update):
    case = _extreme(memory_case(length=70, depth=depth))
    kw = {"chunk_size": 16, "max_surprise_norm": 1.0, "update": update}
    _assert_same(_run(case, "chunk", **kw), _run(case, "naive", **kw), rel_err, tol=1e-9)
    leaves = [x.float().requires_grad_() for x in case.leaves()]
    y, end = _run(case.from_leaves(leaves, depth), "chunk", **kw)
    _loss(y, end, torch.Generator().manual_seed(0)).backward()
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def test_long_random_sequence_float32_is_finite(memory_case):
    case = memory_case(batch=1, length=32768, heads=2, dim=16, depth=2, dtype=torch.float32, lr=1.0)
    with torch.no_grad():
        y, end = _run(case, "chunk", chunk_size=64, max_surprise_norm=1.0)
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(x).all() for x in (*end.weights, *end.momentum))


@pytest.mark.parametrize("depth", [1, 2])
def test_low_precision_inputs_are_close_to_float64(memory_case, rel_err, depth):
    case = memory_case(length=130, depth=depth, dim=16, hidden=32)
    kw = {"chunk_size": 64, "max_surprise_norm": 1.0}
    y64, end64 = _run(case, "chunk", **kw)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        low = case.from_leaves([x.to(dtype) for x in case.leaves()], depth)
        y, end = _run(low, "chunk", **kw)
        assert y.dtype == dtype
        assert rel_err(y, y64) < tol, dtype
        assert rel_err(end.weights[0], end64.weights[0]) < tol, dtype


def test_segment_sums_are_range_sums():
    x = torch.randn(3, 7, dtype=torch.float64)
    out = segment_sums(x)
    for t in range(7):
        for s in range(7):
            want = x[:, s + 1 : t + 1].sum(-1) if t >= s else torch.full((3,), -torch.inf)
            torch.testing.assert_close(out[:, t, s], want.to(out.dtype))
