"""Fixtures: tiny LM checkpoints (MAC and MAL variants) and small real sequences."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from titans_dna.models import TitansConfig, TitansLM


def tiny_config(**overrides) -> TitansConfig:
    """d_model 32, one layer, 32-token segments / 16-token chunks: fast on a CPU."""
    fields = dict(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32)
    return TitansConfig.preset("tiny", **{**fields, **overrides})


def save_lm(directory: Path, **overrides) -> Path:
    torch.manual_seed(0)
    TitansLM(tiny_config(**overrides)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def lm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_lm(tmp_path_factory.mktemp("lm") / "model")


@pytest.fixture(scope="session")
def lambda_phage(shared_data: Path) -> Path:
    return shared_data / "genomes" / "lambda_phage.fa.gz"


@pytest.fixture(scope="session")
def phage_sequence(lambda_phage: Path) -> str:
    with gzip.open(lambda_phage, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))
