"""bench/subnormals.py: times a saved model's step both ways and leaves subnormals flushed."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import subnormals  # noqa: E402

from titans_dna.models.config import TitansConfig  # noqa: E402
from titans_dna.models.lm import TitansLM  # noqa: E402


def test_table_of_a_saved_model(tmp_path: Path, capsys) -> None:
    config = TitansConfig(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32)
    TitansLM(config).save_pretrained(tmp_path / "model")
    args = ["--model", str(tmp_path / "model"), "--batch", "2", "--context", "32"]
    assert subnormals.main([*args, "--rounds", "2", "--no-append"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split(" | ")
    assert row[0] == f"| {tmp_path / 'model'}" and row[-1].endswith("x |")
    assert float(torch.tensor([1e-39]) * 1.0) == 0.0
