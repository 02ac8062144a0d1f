"""The sequence classifier: online pooling, streaming, padding, checkpoints and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from titans_dna.models import CheckpointError, TitansLM
from titans_dna.models.classifier import TitansForSequenceClassification
from titans_dna.models.pooling import POOLINGS, SequencePooling

from .conftest import tiny_config


@pytest.mark.parametrize("kind", POOLINGS)
def test_pooling_in_pieces_equals_one_pass(kind: str) -> None:
    torch.manual_seed(0)
    pool = SequencePooling(kind, 16, n_heads=4)
    hidden = torch.randn(3, 50, 16)
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[1, 33:] = False
    mask[2, 7:] = False
    whole = pool(hidden, mask)
    acc = pool.start(3, hidden.device, hidden.dtype)
    for start in range(0, 50, 8):
        pool.update(acc, hidden[:, start : start + 8], mask[:, start : start + 8])
    torch.testing.assert_close(pool.finish(acc), whole, rtol=1e-5, atol=1e-6)
    # Padding never leaks: the same rows alone, unpadded, pool identically.
    torch.testing.assert_close(pool(hidden[2:, :7], mask[2:, :7]), whole[2:], rtol=1e-5, atol=1e-6)
    if kind == "mean":
        torch.testing.assert_close(whole[1], hidden[1, :33].mean(0))
    if kind == "last":
        torch.testing.assert_close(whole[1], hidden[1, 32])


@pytest.mark.parametrize("pooling", ["mean", "last", "attention"])
def test_classifier_streams_and_ignores_right_padding(pooling: str) -> None:
    torch.manual_seed(0)
    model = TitansForSequenceClassification(tiny_config(), 3, pooling).eval()
    tokens = torch.randint(5, 9, (2, 200))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    tokens[1, 130:], mask[1, 130:] = 0, False
    with torch.no_grad():
        whole = model(tokens, mask)
        pieces = model(tokens, mask, piece_len=32)
        alone = model(tokens[1:, :130], mask[1:, :130])
    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone, whole[1:], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(tokens, mask, piece_len=48)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = TitansForSequenceClassification(
        tiny_config(), 3, "attention", label_names=["a", "b", "c"]
    ).eval()
    model.save_pretrained(tmp_path / "clf")
    loaded = TitansForSequenceClassification.from_pretrained(tmp_path / "clf")
    assert (loaded.label_names, loaded.pooling_kind, loaded.num_labels) == (
        ["a", "b", "c"],
        "attention",
        3,
    )
    tokens = torch.randint(5, 9, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens))


def test_a_decision_threshold_is_saved_and_checked(tmp_path: Path) -> None:
    model = TitansForSequenceClassification(tiny_config(), 2, decision_threshold=0.31)
    model.save_pretrained(tmp_path / "clf")
    assert (
        TitansForSequenceClassification.from_pretrained(tmp_path / "clf").decision_threshold == 0.31
    )
    config = tmp_path / "clf" / "config.json"
    config.write_text(config.read_text().replace("0.31", "1.5"))
    with pytest.raises(CheckpointError, match=r"decision_threshold 1\.5"):
        TitansForSequenceClassification.from_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="two labels"):
        TitansForSequenceClassification(tiny_config(), 3, decision_threshold=0.5)


def test_backbone_comes_from_a_pretrained_lm(tiny_lm_checkpoint: Path) -> None:
    model = TitansForSequenceClassification.from_pretrained_backbone(tiny_lm_checkpoint, 2)
    lm = TitansLM.from_pretrained(tiny_lm_checkpoint)
    for (name, ours), theirs in zip(
        model.lm.state_dict().items(), lm.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, msg=name)


def test_checkpoint_kinds_are_not_interchangeable(tiny_lm_checkpoint: Path, tmp_path: Path) -> None:
    TitansForSequenceClassification(tiny_config(), 2).save_pretrained(tmp_path / "clf")
    with pytest.raises(CheckpointError, match="is a fine-tuned classifier"):
        TitansForSequenceClassification.from_pretrained_backbone(tmp_path / "clf", 2)
    with pytest.raises(CheckpointError, match="is a pretrained language model"):
        TitansForSequenceClassification.from_pretrained(tiny_lm_checkpoint)
    with pytest.raises(CheckpointError):
        TitansLM.from_pretrained(tmp_path / "clf")
