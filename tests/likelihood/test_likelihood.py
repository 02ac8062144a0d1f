"""`titans-dna likelihood`: streamed scores equal one pass, coordinates, strands, context, files,
bounded pieces, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pybigtools
import pysam
import pytest
import torch
import torch.nn.functional as F

from pipeline.cli import main
from pipeline.likelihood.tracks import BedGraphWriter, read_bedgraph
from titans_dna.models import TitansConfig, TitansLM
from titans_dna.tokenizer import DNATokenizer

TOKENIZER = DNATokenizer()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    sizes = dict(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32)
    directory = tmp_path_factory.mktemp("lm") / "model"
    TitansLM(TitansConfig.preset("tiny", **sizes)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An indexed FASTA of two random contigs (one with a run of N)."""
    rng = np.random.default_rng(4)
    contigs = {
        name: "".join(rng.choice(list("ACGT"), size)) for name, size in (("c1", 900), ("c2", 300))
    }
    contigs["c2"] = contigs["c2"][:100] + "N" * 20 + contigs["c2"][120:]
    path = tmp_path_factory.mktemp("genome") / "genome.fa"
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    pysam.faidx(str(path))
    return path, contigs


def one_pass(checkpoint: Path, sequence: str) -> np.ndarray:
    """log2 p of every base but the first in a single forward pass (the reference)."""
    lm = TitansLM.from_pretrained(checkpoint)
    ids = torch.from_numpy(TOKENIZER.encode(sequence)[0].astype(np.int64))[None]
    with torch.no_grad():
        logp = F.log_softmax(lm(ids)[0].double(), -1)
    return (logp[0, :-1].gather(-1, ids[0, 1:, None])[:, 0] / math.log(2)).numpy()


def likelihood(source: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    args = ["likelihood", str(source), "--checkpoint", str(checkpoint), "-o", str(out)]
    return main([*args, "--device", "cpu", *extra])


def values(bedgraph: Path) -> dict[tuple[str, int], float]:
    return {
        (chrom, pos): value
        for chrom, start, end, value in read_bedgraph(bedgraph)
        for pos in range(start, end)
    }


def test_streamed_record_equals_one_pass(checkpoint: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sequence = "".join(rng.choice(list("ACGT"), 1000))
    fasta = tmp_path / "one.fa"
    fasta.write_text(f">r1\n{sequence}\n")
    out = tmp_path / "r1.bedGraph"
    assert likelihood(fasta, checkpoint, out, "--piece-len", "64") == 0
    want = one_pass(checkpoint, sequence)
    got = values(out)
    assert sorted(got) == [("r1", i) for i in range(1, 1000)]  # the first base has no value
    np.testing.assert_allclose([got[("r1", i)] for i in range(1, 1000)], want, atol=6e-5)
    summary = json.loads((tmp_path / "r1.json").read_text())
    assert summary["scored_bases"] == 999
    assert summary["bits_per_base"] == pytest.approx(-want.mean(), rel=1e-5)
    bw = pybigtools.open(str(tmp_path / "r1.bw"))
    assert bw.chroms() == {"r1": 1000}
    track = bw.values("r1", 0, 1000, fillna=np.nan)
    assert np.isnan(track[0])
    np.testing.assert_allclose(track[1:], want, atol=6e-5)


def test_intervals_in_genome_coordinates_with_strand_and_context(
    checkpoint: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    fasta, contigs = genome
    bed = tmp_path / "iv.bed"
    bed.write_text("c1\t500\t700\tx\t0\t-\nc1\t100\t300\tx\t0\t+\nc2\t90\t130\n")
    out = tmp_path / "iv.bedGraph"
    assert likelihood(bed, checkpoint, out, "--genome", str(fasta), "--context", "50") == 0
    got = values(out)
    plus = one_pass(checkpoint, contigs["c1"][50:300])[49:]  # bases 100..299 after 50 of context
    np.testing.assert_allclose([got[("c1", p)] for p in range(100, 300)], plus, atol=6e-5)
    minus_seq = TOKENIZER.decode(
        TOKENIZER.reverse_complement(TOKENIZER.encode(contigs["c1"][500:750])[0])
    )
    minus = one_pass(checkpoint, minus_seq)[49:]  # reverse strand: left context is 700..749
    np.testing.assert_allclose([got[("c1", 699 - i)] for i in range(200)], minus, atol=6e-5)
    assert not any(("c2", p) in got for p in range(100, 120))  # N has no value
    lines = [(c, s) for c, s, _, _ in read_bedgraph(out)]
    assert lines == sorted(lines)  # chromosome by chromosome, ascending
    records = json.loads((tmp_path / "iv.json").read_text())["records"]
    assert [r["name"] for r in records] == ["c1:101-300(+)", "c1:501-700(-)", "c2:91-130(+)"]
    assert [r["context"] for r in records] == [50, 50, 50]


def test_region_list_is_one_based(
    checkpoint: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    fasta, contigs = genome
    regions = tmp_path / "regions.txt"
    regions.write_text("# region list\nc1:1,01-200\n")
    out = tmp_path / "reg.bedGraph"
    assert likelihood(regions, checkpoint, out, "--genome", str(fasta), "--no-bigwig") == 0
    got = values(out)
    assert min(p for _, p in got) == 101 and max(p for _, p in got) == 199  # 0-based 100..199
    np.testing.assert_allclose(
        [got[("c1", p)] for p in range(101, 200)], one_pass(checkpoint, contigs["c1"][100:200]),
        atol=6e-5,
    )  # fmt: skip
    assert not (tmp_path / "reg.bw").exists()


def test_pieces_are_bounded(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    widths = []
    forward = TitansLM.forward

    def spy(self, tokens, state=None):
        widths.append(tokens.shape[1])
        return forward(self, tokens, state)

    monkeypatch.setattr(TitansLM, "forward", spy)
    fasta = tmp_path / "long.fa"
    fasta.write_text(">long\n" + "ACGTTGCA" * 2000 + "\n")
    assert likelihood(fasta, checkpoint, tmp_path / "long.bedGraph", "--piece-len", "256") == 0
    assert max(widths) == 256 and sum(widths) == 16000


def test_bedgraph_merges_equal_runs_and_skips_missing(tmp_path: Path) -> None:
    path = tmp_path / "t.bedGraph"
    with path.open("w") as handle:
        writer = BedGraphWriter(handle, "t", "test")
        writer.write("a", 10, np.array([-1.0, -1.0, np.nan, -2.0, -2.00001, -3.0], np.float32))
        writer.write("b", 0, np.array([-1.0], np.float32))
    assert list(read_bedgraph(path)) == [
        ("a", 10, 12, -1.0), ("a", 13, 15, -2.0), ("a", 15, 16, -3.0), ("b", 0, 1, -1.0)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("bed", "extra", "message"),
    [
        ("c1\t10\t50\nc1\t40\t60\n", (), "overlap"),
        ("c9\t10\t50\n", (), "not in"),
        ("c1\t10\t10\n", (), "empty interval"),
        ("c1\t10\t50\n", ("--no-genome",), "--genome"),
    ],
)
def test_bad_intervals_fail_with_one_line_and_leave_nothing(
    checkpoint: Path,
    genome: tuple[Path, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    bed: str,
    extra: tuple[str, ...],
    message: str,
) -> None:
    path = tmp_path / "bad.bed"
    path.write_text(bed)
    args = [] if extra else ["--genome", str(genome[0])]
    assert likelihood(path, checkpoint, tmp_path / "bad.bedGraph", *args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == [path]


def test_context_needs_genome_intervals(checkpoint: Path, tmp_path: Path, capsys) -> None:
    fasta = tmp_path / "one.fa"
    fasta.write_text(">r1\nACGTACGT\n")
    assert likelihood(fasta, checkpoint, tmp_path / "o.bedGraph", "--context", "10") == 3
    assert "--context" in capsys.readouterr().err
