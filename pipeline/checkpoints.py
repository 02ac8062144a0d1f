"""Model checkpoints and devices for the pipeline commands, with one-line user errors.

A checkpoint argument may name the checkpoint folder itself (config.json inside) or a pretrain /
finetune output folder holding it under `model/`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from pipeline.errors import PipelineError, input_error
from pipeline.manifest import MANIFEST_FILE, manifest_problem, sha256_file
from titans_dna.models.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    read_checkpoint_meta,
)
from titans_dna.models.classifier import (
    MODEL_TYPE as CLASSIFIER_TYPE,
)
from titans_dna.models.classifier import (
    TitansForSequenceClassification,
    checkpoint_model_type,
)
from titans_dna.models.config import TitansConfig
from titans_dna.models.lm import TitansLM

log = logging.getLogger("pipeline")


def parse_overrides(items: list[str]) -> dict:
    """`KEY=VALUE` strings to a dict (`cli_options.parse_setting`)."""
    from pipeline.cli_options import parse_setting

    return dict(parse_setting(item) for item in items)


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder named by `path` (itself, or its `model/` subfolder), checked
    against its manifest when it has one."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, "checkpoint not found")
    if not (path / CONFIG_FILE).is_file() and (path / "model" / CONFIG_FILE).is_file():
        path = path / "model"
    if (path / MANIFEST_FILE).is_file():
        problem = manifest_problem(path)
        if problem is not None:
            raise input_error(path, f"corrupt checkpoint: {problem}")
    return path


def check_tokenizer(directory: Path) -> None:
    """A checkpoint's tokenizer.json, when present, must describe this library's tokenizer."""
    from titans_dna.tokenizer import DNATokenizer

    if (directory / "tokenizer.json").is_file():
        try:
            DNATokenizer.load(directory / "tokenizer.json")
        except ValueError as err:
            raise PipelineError(str(err)) from None


def weights_sha256(directory: Path) -> str:
    """sha256 of the checkpoint's weights file (identifies the exact model)."""
    return sha256_file(directory / WEIGHTS_FILE)


def load_backbone(path: str | Path, device: torch.device) -> tuple[TitansLM, Path]:
    """The TitansLM of a pretrained checkpoint, or the `.lm` of a fine-tuned classifier."""
    directory = checkpoint_dir(path)
    check_tokenizer(directory)
    try:
        meta = read_checkpoint_meta(directory)
        if meta["model_type"] == CLASSIFIER_TYPE:
            log.info("%s is a fine-tuned classifier; using its language model", directory)
            lm = TitansForSequenceClassification.from_meta(meta, directory).lm
        else:
            lm = TitansLM.from_meta(meta, directory)
    except CheckpointError as err:
        raise PipelineError(str(err)) from None
    return lm.to(device).eval(), directory


def default_rc_average(directory: Path) -> bool:
    """Whether a checkpoint's model averages both strands: a fine-tuned classifier's own
    setting; False (the forward strand) for a pretrained language model."""
    if checkpoint_model_type(directory) != CLASSIFIER_TYPE:
        return False
    meta = json.loads((directory / CONFIG_FILE).read_text())
    return bool(meta.get("rc_average", True))


def load_classifier(
    path: str | Path, device: torch.device
) -> tuple[TitansForSequenceClassification, Path]:
    """A fine-tuned classifier (checkpoint folder or finetune -o folder)."""
    directory = checkpoint_dir(path)
    check_tokenizer(directory)
    try:
        model = TitansForSequenceClassification.from_pretrained(directory)
    except CheckpointError as err:
        raise PipelineError(str(err)) from None
    return model.to(device).eval(), directory


def new_classifier(
    checkpoint: str,
    *,
    num_labels: int,
    pooling: str,
    label_names: list[str],
    preset: str,
    overrides: dict | None = None,
) -> TitansForSequenceClassification:
    """A classifier on a pretrained backbone, or from scratch (`checkpoint == "none"`) with the
    model of `preset` and its fields replaced by `overrides`."""
    if checkpoint == "none":
        try:
            config = TitansConfig.preset(preset, **(overrides or {}))
        except (TypeError, ValueError) as err:
            raise PipelineError(f"--preset {preset} --set: {err}") from None
        return TitansForSequenceClassification(config, num_labels, pooling, label_names=label_names)
    if overrides:
        raise PipelineError("--set changes the model of --checkpoint none only")
    directory = checkpoint_dir(checkpoint)
    check_tokenizer(directory)
    try:
        return TitansForSequenceClassification.from_pretrained_backbone(
            directory, num_labels, pooling, label_names=label_names
        )
    except CheckpointError as err:
        raise PipelineError(str(err)) from None
