"""Sequence classification on a Titans language model: pooled hidden states, dropout, linear head.

`TitansForSequenceClassification` holds a `TitansLM` at `.lm`. Its checkpoints have model_type
"titans-classifier" and store num_labels, pooling and the label names beside the LM config; a
pretrained LM checkpoint (model_type "titans-lm") is loaded into `.lm` by
`from_pretrained_backbone`. Passing one kind where the other is expected raises CheckpointError
with a message saying which kind the folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from titans_dna.models.checkpoint import (
    CONFIG_FILE,
    CheckpointError,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
)
from titans_dna.models.config import TitansConfig
from titans_dna.models.lm import MODEL_TYPE as LM_MODEL_TYPE
from titans_dna.models.lm import TitansLM
from titans_dna.models.pooling import SequencePooling, pool_pieces

MODEL_TYPE = "titans-classifier"
CLASSIFIER_POOLINGS = ("mean", "last", "attention")


class TitansForSequenceClassification(nn.Module):
    """A TitansLM (`.lm`), a pooling over real tokens, dropout and a linear head.

    forward(tokens [B, T], attention_mask [B, T]) -> logits [B, num_labels]. Padding must be on
    the right (the model is causal, so real tokens never see it).
    """

    def __init__(
        self,
        config: TitansConfig,
        num_labels: int,
        pooling: str = "mean",
        *,
        label_names: list[str] | None = None,
        classifier_dropout: float = 0.1,
        rc_average: bool = True,
        decision_threshold: float | None = None,
    ):
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        if pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(f"pooling must be one of {CLASSIFIER_POOLINGS}, got {pooling!r}")
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"{len(label_names)} label names for {num_labels} labels")
        self.config = config
        self.num_labels = num_labels
        self.pooling_kind = pooling
        self.label_names = list(label_names) if label_names else [str(i) for i in range(num_labels)]
        self.classifier_dropout = classifier_dropout
        # Whether predictions average both strands: off for tasks whose labels depend on
        # orientation (fine-tuning decides; `predict` follows unless told otherwise).
        self.rc_average = rc_average
        self.decision_threshold = decision_threshold
        self.lm = TitansLM(config)
        self.pool = SequencePooling(pooling, config.d_model, config.n_heads)
        self.dropout = nn.Dropout(classifier_dropout)
        self.head = nn.Linear(config.d_model, num_labels)

    @property
    def decision_threshold(self) -> float | None:
        """Probability of label 1 from which a binary classifier predicts it (None: arg-max);
        fine-tuning chooses it on dev, since MCC depends on it."""
        return self._decision_threshold

    @decision_threshold.setter
    def decision_threshold(self, value: float | None) -> None:
        if value is not None and not (self.num_labels == 2 and 0 < value < 1):
            raise ValueError(
                f"decision_threshold {value} needs two labels (this classifier has "
                f"{self.num_labels}) and a value in (0, 1)"
            )
        self._decision_threshold = value

    def forward(
        self, tokens: Tensor, attention_mask: Tensor | None = None, *, piece_len: int | None = None
    ) -> Tensor:
        """Logits [B, num_labels] for tokens [B, T] with attention_mask [B, T] (True = real).

        With `piece_len` (a multiple of config.stream_multiple) the sequence streams through the
        recurrent state in pieces of that length, so activation memory does not grow with T;
        the result equals one pass.
        """
        return self.head(self.dropout(self.embed(tokens, attention_mask, piece_len=piece_len)))

    def embed(
        self, tokens: Tensor, attention_mask: Tensor | None = None, *, piece_len: int | None = None
    ) -> Tensor:
        """Pooled hidden states [B, d_model] (the head's input, before dropout)."""
        if attention_mask is None:
            attention_mask = tokens != self.config.pad_id
        if piece_len is not None and piece_len % self.config.stream_multiple:
            raise ValueError(
                f"piece_len {piece_len} is not a multiple of {self.config.stream_multiple}"
            )
        step = piece_len or max(tokens.shape[1], 1)
        pieces = (
            (start, tokens[:, start : start + step], attention_mask[:, start : start + step])
            for start in range(0, tokens.shape[1], step)
        )
        return pool_pieces(self.lm, self.pool, pieces)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (model_type, LM config, labels, pooling) and model.safetensors."""
        return save_checkpoint(
            self,
            directory,
            model_type=MODEL_TYPE,
            config=self.config.to_dict(),
            extra={
                "num_labels": self.num_labels,
                "pooling": self.pooling_kind,
                "label_names": self.label_names,
                "classifier_dropout": self.classifier_dropout,
                "rc_average": self.rc_average,
                "decision_threshold": self.decision_threshold,
            },
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, map_location: str = "cpu"
    ) -> TitansForSequenceClassification:
        """Load a classifier written by `save_pretrained` (in eval mode); CheckpointError for
        anything else."""
        if checkpoint_model_type(directory) == LM_MODEL_TYPE:
            raise CheckpointError(
                f"{directory}: is a pretrained language model ({LM_MODEL_TYPE}), not a fine-tuned "
                "classifier; fine-tune it first (titans-dna finetune --checkpoint ...)"
            )
        return cls.from_meta(
            read_checkpoint_meta(directory, model_type=MODEL_TYPE), directory, map_location
        )

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], directory: str | Path, map_location: str = "cpu"
    ) -> TitansForSequenceClassification:
        """The classifier described by an already read config.json, with the weights of
        `directory`."""
        try:
            model = cls(
                TitansConfig.from_dict(meta["config"]),
                int(meta["num_labels"]),
                meta["pooling"],
                label_names=list(meta["label_names"]),
                classifier_dropout=float(meta.get("classifier_dropout", 0.1)),
                rc_average=bool(meta.get("rc_average", True)),
                decision_threshold=_optional_float(meta.get("decision_threshold")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{directory}: invalid classifier config ({err})") from err
        load_weights(model, directory, map_location)
        return model.to(map_location).eval()

    @classmethod
    def from_pretrained_backbone(
        cls,
        directory: str | Path,
        num_labels: int,
        pooling: str = "mean",
        *,
        label_names: list[str] | None = None,
        classifier_dropout: float = 0.1,
        map_location: str = "cpu",
    ) -> TitansForSequenceClassification:
        """A new classifier whose `.lm` is the pretrained TitansLM in `directory`."""
        if checkpoint_model_type(directory) == MODEL_TYPE:
            raise CheckpointError(
                f"{directory}: is a fine-tuned classifier ({MODEL_TYPE}), not a pretrained "
                f"language model ({LM_MODEL_TYPE}); pass the pretrained checkpoint "
                "(pretrain -o DIR: DIR/model)"
            )
        lm = TitansLM.from_pretrained(directory, map_location=map_location)
        model = cls(
            lm.config,
            num_labels,
            pooling,
            label_names=label_names,
            classifier_dropout=classifier_dropout,
        )
        model.lm = lm
        return model


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def checkpoint_model_type(directory: str | Path) -> str | None:
    """The model_type recorded in a checkpoint folder's config.json, or None if unreadable."""
    try:
        meta: Any = json.loads((Path(directory) / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta.get("model_type") if isinstance(meta, dict) else None


def freeze_backbone(model: TitansForSequenceClassification) -> None:
    """Stop gradients into `.lm`; the pooling and head stay trainable."""
    for parameter in model.lm.parameters():
        parameter.requires_grad_(False)


def count_trainable(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "CLASSIFIER_POOLINGS",
    "MODEL_TYPE",
    "TitansForSequenceClassification",
    "checkpoint_model_type",
    "count_trainable",
    "freeze_backbone",
]
