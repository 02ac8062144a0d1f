"""Titans models: configuration, language model, checkpoints."""

from titans_dna.models.checkpoint import CheckpointError
from titans_dna.models.config import TitansConfig, preset
from titans_dna.models.lm import TitansLM, TitansState

__all__ = ["CheckpointError", "TitansConfig", "TitansLM", "TitansState", "preset"]
