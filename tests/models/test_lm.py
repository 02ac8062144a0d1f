"""TitansLM for every variant: streaming equals one pass, causality, dtypes, scoring."""

from __future__ import annotations

import pytest
import torch

from titans_dna.models.config import TitansConfig
from titans_dna.models.lm import TitansLM

VARIANTS = ["lmm", "mac", "mag", "mal", "swa"]


def _config(variant: str, **overrides) -> TitansConfig:
    sizes = dict(d_model=16, n_layers=2, n_heads=2, chunk_size=8, segment_len=16, window=12)
    return TitansConfig.preset("tiny", variant=variant, **{**sizes, **overrides})


def _model(variant: str, dtype: torch.dtype = torch.float64, **overrides) -> TitansLM:
    torch.manual_seed(0)
    return TitansLM(_config(variant, **overrides)).to(dtype).eval()


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(5, 9, (batch, length), generator=generator)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pieces_with_state_equal_one_pass(variant: str) -> None:
    model = _model(variant)
    tokens = _tokens(2, 83)  # last piece is not a whole segment
    logits, hidden, _ = model(tokens)
    state, pieces = None, []
    for piece in tokens.split([16, 32, 16, 19], dim=1):
        out, h, state = model(piece, state)
        pieces.append((out, h))
    torch.testing.assert_close(torch.cat([p[0] for p in pieces], 1), logits, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat([p[1] for p in pieces], 1), hidden, rtol=0, atol=1e-10)
    assert state.position == 83


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_size_does_not_grow_with_length(variant: str) -> None:
    model = _model(variant, torch.float32)
    sizes = []
    state = None
    for piece in _tokens(1, 96).split(16, dim=1):
        _, _, state = model(piece, state)
        sizes.append(sum(t.numel() for t in _tensors(state.layers)))
    assert sizes[2] == sizes[-1]


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name))


@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_token_t_changes_nothing_before_t(variant: str) -> None:
    model = _model(variant)
    tokens = _tokens(1, 48)
    changed = tokens.clone()
    changed[0, 21] = 5 if tokens[0, 21] != 5 else 6
    diff = (model(tokens)[0] - model(changed)[0]).abs().amax(-1)[0]
    assert diff[:21].max() == 0
    assert diff[21:].max() > 0


def test_misaligned_stream_continuation_is_refused() -> None:
    model = _model("mac")
    _, _, state = model(_tokens(1, 24))
    with pytest.raises(ValueError, match="multiple of 16 tokens"):
        model(_tokens(1, 16), state)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_backward_finite(variant: str, dtype: torch.dtype) -> None:
    model = _model(variant, dtype).train()
    logits, hidden, _ = model(_tokens(2, 40))
    assert logits.dtype == dtype and hidden.shape == (2, 40, 16)
    assert torch.isfinite(logits).all()
    logits.float().logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_gradient_checkpointing_gives_the_same_gradients(variant: str) -> None:
    model = _model(variant).train()
    tokens = _tokens(2, 32)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(tokens)[0].logsumexp(-1).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_log_likelihood_skips_pad_and_n_targets() -> None:
    model = _model("mag")
    tokens = _tokens(1, 32)
    masked = tokens.clone()
    masked[0, 10], masked[0, 20] = model.config.n_id, model.config.pad_id
    logp = torch.log_softmax(model(masked)[0], -1)[0, :-1].gather(-1, masked[0, 1:, None])[:, 0]
    keep = torch.ones(31, dtype=torch.bool)
    keep[[9, 19]] = False  # targets 10 and 20
    torch.testing.assert_close(model.log_likelihood(masked)[0], logp[keep].sum())
    assert model.log_likelihood(masked)[0] > logp.sum()


@pytest.mark.parametrize("variant", ["lmm", "mac"])
def test_log_likelihood_in_pieces_equals_one_pass(variant: str) -> None:
    model = _model(variant)
    tokens = _tokens(2, 70)
    torch.testing.assert_close(
        model.log_likelihood(tokens, piece_len=32), model.log_likelihood(tokens), rtol=0, atol=1e-9
    )
    with pytest.raises(ValueError, match="piece_len must be a positive multiple of"):
        model.log_likelihood(tokens, piece_len=20)


def test_state_detach_and_to() -> None:
    model = _model("mal", torch.float32).train()
    _, _, state = model(_tokens(1, 16))
    detached = state.detach()
    assert all(not t.requires_grad for t in _tensors(detached.layers))
    assert any(t.requires_grad for t in _tensors(state.layers))
    doubled = state.to(torch.float64)
    assert all(t.dtype == torch.float64 for t in _tensors(doubled.layers))
    assert doubled.position == state.position == 16
