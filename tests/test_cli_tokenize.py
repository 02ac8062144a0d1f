"""`titans-dna tokenize` end to end: through pipeline.cli.main and the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.tokenstore import TokenStore
from titans_dna.tokenizer import DNATokenizer

tok = DNATokenizer()
CONSOLE_SCRIPT = Path(sys.executable).parent / "titans-dna"


def test_tokenize_genomes(shared_data: Path, tmp_path: Path) -> None:
    genomes = shared_data / "genomes"
    out = tmp_path / "store.h5"
    code = main(
        [
            "tokenize",
            str(genomes / "lambda_phage.fa.gz"),
            str(genomes / "hpylori_g27.fa.gz"),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    with TokenStore(out) as store:
        assert [i.source for i in store.inputs] == ["lambda_phage", "hpylori_g27"]
        assert [c.length for c in store.contigs] == [48502, 1652982]
    assert [p.name for p in tmp_path.iterdir()] == ["store.h5"]  # no temporary file left


def test_invalid_policy_option(tmp_path: Path, capfd) -> None:
    fasta = tmp_path / "odd.fa"
    fasta.write_bytes(b">a\nACGT1acgt\n")
    out = tmp_path / "odd.h5"
    assert main(["tokenize", str(fasta), "-o", str(out)]) == 3
    assert "--invalid n" in capfd.readouterr().err and not out.exists()
    assert main(["tokenize", str(fasta), "-o", str(out), "--invalid", "n"]) == 0
    with TokenStore(out) as store:
        ids, soft = store.window(0, 0, 9)
        assert tok.decode(ids, soft) == "ACGTNacgt"


def test_cram_with_reference(shared_data: Path, tmp_path: Path) -> None:
    fixtures = shared_data / "fixtures"
    out = tmp_path / "reads.h5"
    args = ["tokenize", str(fixtures / "range.cram"), "--reference", str(fixtures / "ce.fa")]
    assert main([*args, "-o", str(out)]) == 0
    with TokenStore(out) as store:
        assert len(store.contigs) == 112 and store.inputs[0].format == "cram"


def test_bed_with_genome(shared_data: Path, tmp_path: Path) -> None:
    genome = shared_data / "fixtures" / "ce.fa"
    bed = tmp_path / "regions.bed"
    bed.write_text("CHROMOSOME_I\t1000\t1100\ta\t0\t+\nCHROMOSOME_I\t1000\t1100\tb\t0\t-\n")
    out = tmp_path / "regions.h5"
    assert main(["tokenize", str(bed), "--genome", str(genome), "-o", str(out)]) == 0
    with TokenStore(out) as store:
        names = [c.name for c in store.contigs]
        assert names == ["CHROMOSOME_I:1001-1100(+)", "CHROMOSOME_I:1001-1100(-)"]
        plus, minus = store.contig_tokens(0), store.contig_tokens(1)
        assert np.array_equal(minus, tok.reverse_complement(plus))


def test_help_explains_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenize", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("INPUT", "--output", "--invalid", "--reference", "--genome"):
        assert option in text
    assert "CRAM" in text and "BED" in text and "soft-mask" in text


def test_console_script(shared_data: Path, tmp_path: Path) -> None:
    """The installed entry point runs (bad inputs are covered through `main` with capfd)."""
    out = tmp_path / "lambda.h5"
    good = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "tokenize",
            str(shared_data / "genomes" / "lambda_phage.fa.gz"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert "wrote" in good.stderr and out.is_file()
