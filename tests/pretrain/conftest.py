"""Token stores built from the real lambda phage genome."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.tokenstore import write_token_store

from .helpers import lambda_sequence, write_fasta


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
