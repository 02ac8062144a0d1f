"""Fixtures: a tiny pretrained LM checkpoint and small slices of a real GUE task."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from titans_dna.models import TitansConfig, TitansLM


def tiny_config(**overrides) -> TitansConfig:
    """d_model 32, one MAC layer, 32-token segments: fast on a CPU, streams in pieces of 32."""
    fields = dict(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32)
    return TitansConfig.preset("tiny", **{**fields, **overrides})


@pytest.fixture(scope="session")
def tiny_lm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("lm") / "model"
    TitansLM(tiny_config()).save_pretrained(directory)
    return directory


def write_split(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sequence", "label"])
        writer.writerows(rows)
    return path


def read_rows(path: Path, n: int) -> list[tuple[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [tuple(row) for _, row in zip(range(n), reader, strict=False)]


@pytest.fixture
def gue_slice(shared_data: Path, tmp_path: Path):
    """Write the first rows of a real GUE task's splits into a task folder under tmp_path."""

    def make(task: str = "prom_core_all", train: int = 160, dev: int = 40, test: int = 40) -> Path:
        source = shared_data / "benchmarks" / "gue" / task
        folder = tmp_path / task
        folder.mkdir()
        for split, n in (("train", train), ("dev", dev), ("test", test)):
            if n:
                write_split(folder / f"{split}.csv", read_rows(source / f"{split}.csv", n))
        return folder

    return make
