"""Token stores built from the real lambda phage genome, and a tiny pretraining configuration."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.pretrain.config import PretrainConfig, load_config
from pipeline.tokenstore import write_token_store

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


@pytest.fixture(scope="session")
def lambda_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token store of the lambda phage genome (one contig)."""
    out = tmp_path_factory.mktemp("stores") / "lambda.h5"
    write_token_store([shared_data / "genomes" / "lambda_phage.fa.gz"], out)
    return out


@pytest.fixture(scope="session")
def split_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lambda cut into three contigs of 16 kbp: 'left', 'middle' (soft-masked 2-4 kbp, and
    N over 8-9 kbp) and 'right'."""
    seq = lambda_sequence(shared_data)
    middle = seq[16000:32000]
    middle = (
        middle[:2000] + middle[2000:4000].lower() + middle[4000:8000] + "N" * 1000 + middle[9000:]
    )
    folder = tmp_path_factory.mktemp("split")
    fasta = write_fasta(
        folder / "split.fa", {"left": seq[:16000], "middle": middle, "right": seq[32000:48000]}
    )
    out = folder / "split.h5"
    write_token_store([fasta], out)
    return out


def tiny_config(stores: list[Path], *sets: str) -> PretrainConfig:
    """The TINY configuration on `stores`, with further `--set` overrides."""
    return load_config(None, [*TINY, *sets], [str(s) for s in stores])
