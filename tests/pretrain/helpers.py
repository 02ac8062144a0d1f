"""Helpers of the pretraining tests: the lambda genome as text, FASTA writing, a tiny config."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.pretrain.config import PretrainConfig, load_config

# A tiny model and short run: every test trains in a few seconds on one core.
TINY = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.chunk_size=32",
    "model.segment_len=64",
    "model.window=64",
    "train.context=128",
    "train.batch_size=4",
    "train.max_steps=12",
    "train.log_every=2",
    "optim.warmup_steps=3",
    "eval.every=6",
    "eval.max_tokens=1024",
    "eval.markov_max_order=3",
    "checkpoint.every=4",
]


def lambda_sequence(shared_data: Path) -> str:
    """The lambda phage genome (48.5 kbp) as one uppercase string."""
    with gzip.open(shared_data / "genomes" / "lambda_phage.fa.gz", "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    """A plain FASTA with one record per item, 80 letters per line."""
    lines = []
    for name, seq in records.items():
        lines.append(f">{name}")
        lines.extend(seq[i : i + 80] for i in range(0, len(seq), 80))
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(stores: list[Path], *sets: str) -> PretrainConfig:
    """The TINY configuration on `stores`, with further `--set` overrides."""
    return load_config(None, [*TINY, *sets], [str(s) for s in stores])


def assert_same_trajectory(got: list[dict], want: list[dict]) -> None:
    """Same data and gradients: the first steps agree to float32 rounding. Later steps drift
    slowly (AdamW turns rounding noise in near-zero gradients into full-size updates), so they
    are compared more loosely (1e-2); a rank reading the wrong windows fails the tight check
    on the first steps at once."""
    assert [(r["step"], r["tokens"]) for r in got] == [(r["step"], r["tokens"]) for r in want]
    assert got[0]["grad_norm"] == pytest.approx(want[0]["grad_norm"], rel=1e-5)
    first = [r["train_loss"] for r in got[:2]]
    assert first == pytest.approx([r["train_loss"] for r in want[:2]], rel=1e-5)
    for key in ("train_loss", "val_loss"):
        pairs = [(g[key], w[key]) for g, w in zip(got, want, strict=True) if w[key] is not None]
        assert [g for g, _ in pairs] == pytest.approx([w for _, w in pairs], rel=1e-2), key
