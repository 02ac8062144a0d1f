"""TitansConfig: presets, overrides, validation and serialisation."""

from __future__ import annotations

import json

import pytest

from titans_dna.models.config import TitansConfig, preset


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_presets_are_valid_and_round_trip_through_json(name: str) -> None:
    cfg = preset(name)
    again = TitansConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert cfg.d_model % cfg.n_heads == 0 and cfg.segment_len % cfg.chunk_size == 0


def test_tiny_preset_is_a_cpu_size() -> None:
    cfg = TitansConfig.preset("tiny")
    assert cfg.d_model <= 128 and cfg.n_layers <= 4 and cfg.memory_depth == 2
    assert (cfg.chunk_size, cfg.segment_len, cfg.window) == (64, 256, 256)


def test_overrides_apply_and_are_validated() -> None:
    cfg = TitansConfig.preset("tiny", variant="mag", window=128)
    assert (cfg.variant, cfg.window) == ("mag", 128)
    with pytest.raises(ValueError, match="variant must be one of"):
        TitansConfig.preset("tiny", variant="transformer")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")


def test_unknown_key_is_named() -> None:
    data = {**TitansConfig().to_dict(), "d_modle": 64}
    with pytest.raises(ValueError, match=r"unknown TitansConfig field.*d_modle"):
        TitansConfig.from_dict(data)
    with pytest.raises(ValueError, match="d_modle"):
        TitansConfig.preset("tiny", d_modle=64)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"d_model": 100, "n_heads": 3}, "divisible by n_heads"),
        ({"segment_len": 100}, "multiple of chunk_size"),
        ({"n_layers": 0}, "n_layers must be >= 1"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"d_model": "64"}, "d_model must be int"),
        ({"memory_residual": 1}, "memory_residual must be bool"),
        ({"max_surprise_norm": 0.0}, "max_surprise_norm must be > 0"),
        ({"memory_impl": "cuda"}, "memory_impl must be one of"),
        ({"memory_activation": "tanh"}, "memory_activation must be one of"),
        ({"n_id": 10}, "n_id .* below vocab_size"),
        ({"d_model": 30, "n_heads": 2}, "even head_dim"),
    ],
)
def test_invalid_values_raise_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TitansConfig(**overrides)


def test_integers_are_accepted_for_float_fields() -> None:
    cfg = TitansConfig(theta_max=2, max_surprise_norm=None)
    assert isinstance(cfg.theta_max, float) and cfg.max_surprise_norm is None


def test_derived_sizes() -> None:
    cfg = TitansConfig(d_model=128, n_heads=4, memory_expansion=2, variant="mac")
    assert (cfg.head_dim, cfg.memory_hidden) == (32, 64)
    assert cfg.mlp_hidden % 16 == 0 and cfg.mlp_hidden >= 2 * 4 * 128 // 3
    assert cfg.stream_multiple == cfg.segment_len
    assert TitansConfig(variant="lmm").stream_multiple == TitansConfig().chunk_size
