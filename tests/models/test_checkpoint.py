"""Checkpoint folders: round trip, atomic replacement and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from titans_dna.models.checkpoint import (
    CheckpointError,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
)
from titans_dna.models.config import TitansConfig
from titans_dna.models.lm import TitansLM


def _config(**overrides) -> TitansConfig:
    sizes = dict(
        variant="mac", d_model=16, n_layers=2, n_heads=2, chunk_size=8, segment_len=16, window=12
    )
    return TitansConfig.preset("tiny", **{**sizes, **overrides})


def _model(**overrides) -> TitansLM:
    torch.manual_seed(0)
    return TitansLM(_config(**overrides)).eval()


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _model()
    out = model.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((out / "config.json").read_text())
    assert meta["model_type"] == "titans-lm" and meta["format_version"] == 1
    assert meta["config"] == model.config.to_dict()
    loaded = TitansLM.from_pretrained(out)
    assert not loaded.training and loaded.config == model.config
    tokens = torch.randint(5, 9, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens)[0], model(tokens)[0], rtol=0, atol=0)


def test_save_replaces_an_existing_folder_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    _model().save_pretrained(target)
    (target / "stale.txt").write_text("old")
    _model(n_layers=1).save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert TitansLM.from_pretrained(target).config.n_layers == 1


def test_weights_that_do_not_fit_the_config_name_the_problem(tmp_path: Path) -> None:
    target = _model().save_pretrained(tmp_path / "ckpt")
    meta = json.loads((target / "config.json").read_text())
    meta["config"]["d_model"] = 32
    (target / "config.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch blocks\.0\.attention\.kv_proj\.weight \(32, 16\) vs \(64, 32\)",
    ):
        TitansLM.from_pretrained(target)
    meta["config"]["d_model"], meta["config"]["n_layers"] = 16, 3
    (target / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"missing blocks\.2\."):
        TitansLM.from_pretrained(target)


def test_loading_into_a_mismatched_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    target = _model().save_pretrained(tmp_path / "ckpt")
    other = _model(variant="mag")
    with pytest.raises(
        CheckpointError, match=r"unexpected blocks\.0\.context_norm\.weight"
    ) as info:
        load_weights(other, target)
    assert isinstance(info.value, ValueError)


def test_classifier_checkpoint_is_refused_with_its_type(tmp_path: Path) -> None:
    model = _model()
    target = save_checkpoint(
        model,
        tmp_path / "clf",
        model_type="titans-classifier",
        config=model.config.to_dict(),
        extra={"num_labels": 2, "label_names": ["neg", "pos"]},
    )
    meta = read_checkpoint_meta(target, model_type="titans-classifier")
    assert meta["label_names"] == ["neg", "pos"]
    with pytest.raises(
        CheckpointError, match="is a 'titans-classifier' checkpoint, not 'titans-lm'"
    ):
        TitansLM.from_pretrained(target)


def test_missing_and_broken_files_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        TitansLM.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        TitansLM.from_pretrained(tmp_path)
    target = _model().save_pretrained(tmp_path / "ckpt")
    (target / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no model\.safetensors"):
        TitansLM.from_pretrained(target)
    (target / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint config"):
        TitansLM.from_pretrained(target)


def test_unknown_config_field_and_future_format_are_checkpoint_errors(tmp_path: Path) -> None:
    target = _model().save_pretrained(tmp_path / "ckpt")
    meta = json.loads((target / "config.json").read_text())
    bad = {**meta, "config": {**meta["config"], "mystery": 1}}
    (target / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match=r"unknown TitansConfig field.*mystery"):
        TitansLM.from_pretrained(target)
    (target / "config.json").write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(CheckpointError, match="format_version 2 is not supported"):
        TitansLM.from_pretrained(target)


def test_reserved_extra_keys_and_missing_parent_are_refused(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(ValueError, match="reserved keys: config"):
        save_checkpoint(model, tmp_path / "x", model_type="t", config={}, extra={"config": 1})
    with pytest.raises(CheckpointError, match="does not exist"):
        model.save_pretrained(tmp_path / "no" / "such" / "dir")
