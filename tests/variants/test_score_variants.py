"""`titans-dna score-variants`: equivalent descriptions, the exact baseline, identities, bad and
unusual input, readable output."""

from __future__ import annotations

import csv
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pysam
import pytest
import torch

from pipeline.cli import main
from pipeline.variants.alleles import normalize
from pipeline.variants.score import score_variants
from titans_dna.models import TitansConfig, TitansLM
from titans_dna.tokenizer import DNATokenizer

SIZES = dict(d_model=32, n_layers=1, n_heads=2, chunk_size=16, segment_len=32, window=32)
TOKENIZER = DNATokenizer()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("lm") / "model"
    TitansLM(TitansConfig.preset("tiny", **SIZES)).save_pretrained(directory)
    return directory


def _rc(text: str) -> str:
    return TOKENIZER.decode(TOKENIZER.reverse_complement(TOKENIZER.encode(text)[0]))


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> tuple[Path, str]:
    rng = np.random.default_rng(7)
    sequence = "".join(rng.choice(list("ACGT"), 3000))
    sequence = sequence[:1000] + "CACACACACA" + sequence[1010:]  # a repeat for indel alignment
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text(f">c1\n{sequence}\n")
    pysam.faidx(str(path))
    return path, sequence


def write_vcf(path: Path, rows: list[tuple], contigs: dict[str, int]) -> Path:
    header = ["##fileformat=VCFv4.2"] + [
        f"##contig=<ID={c},length={n}>" for c, n in contigs.items()
    ]
    header.append('##INFO=<ID=AF,Number=A,Type=Float,Description="allele frequency">')
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    lines = [f"{c}\t{p}\t.\t{r}\t{a}\t.\tPASS\t{info}" for c, p, r, a, info in rows]
    path.write_text("\n".join(header + lines) + "\n")
    return path


def run(vcf: Path, genome: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    args = ["score-variants", "--vcf", str(vcf), "--genome", str(genome), "--checkpoint",
            str(checkpoint), "-o", str(out), "--window", "32", "--device", "cpu",
            *extra]  # fmt: skip
    return main(args)


def table(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_equivalent_descriptions_agree_on_real_indels(
    checkpoint: Path, shared_data: Path, tmp_path: Path
) -> None:
    genome = shared_data / "genomes" / "human_grch37_chr20.fa.gz"
    scores = {}
    for name in ("chr20_indels.vcf.gz", "chr20_indels.normalized.vcf.gz"):
        out = tmp_path / f"{name}.scored.vcf.gz"
        tsv = tmp_path / f"{name}.tsv"
        vcf = shared_data / "variants" / name
        assert run(vcf, genome, checkpoint, out, "--tsv", str(tsv), "--context", "256") == 0
        scores[name] = [float(r["llr"]) for r in table(tsv)]
    original, normalized = scores.values()
    assert len(original) == 194 and all(math.isfinite(x) for x in original)
    np.testing.assert_allclose(original, normalized, rtol=0, atol=1e-6)
    assert np.std(original) > 0.1  # real scores, not a constant


def test_normalize_left_aligns_in_a_repeat(genome: tuple[Path, str]) -> None:
    _, sequence = genome
    seq = sequence.encode()
    # deleting one CA of the CACACACACA run at 1000..1009, described at three places
    forms = [normalize(seq, p, sequence[p : p + 3], sequence[p]) for p in (1001, 1005, 1007)]

    def haplotype(a) -> str:
        return sequence[: a.pos] + a.alt + sequence[a.pos + len(a.ref) :]

    assert len({haplotype(a) for a in forms}) == 1  # one haplotype ...
    assert forms[0] == forms[1] == forms[2]  # ... one description, as far left as it goes
    assert forms[0].pos < 1001 and forms[0].alt == sequence[forms[0].pos]


def test_stream_equals_window_for_isolated_variants_and_uses_more_context(
    checkpoint: Path, genome: tuple[Path, str]
) -> None:
    path, sequence = genome
    lm = TitansLM.from_pretrained(checkpoint)
    isolated = [("c1", p, sequence[p - 1], "G" if sequence[p - 1] != "G" else "T")
                for p in (700, 1500, 2400)]  # fmt: skip
    kw = {"window": 32, "context": 256}
    stream = score_variants(lm, path, isolated, method="stream", **kw)
    window = score_variants(lm, path, isolated, method="window", **kw)
    assert [s.llr for s in stream] == [w.llr for w in window]  # the same computation
    dense = [("c1", p, sequence[p - 1], "G" if sequence[p - 1] != "G" else "T")
             for p in range(1200, 2800, 100)]  # fmt: skip
    stream = score_variants(lm, path, dense, method="stream", **kw)
    window = score_variants(lm, path, dense, method="window", **kw)
    # the first variant of each strand's pass has no more context than its window
    assert stream[0].llr_fwd == window[0].llr_fwd and stream[-1].llr_rev == window[-1].llr_rev
    later = np.array([s.llr_fwd - w.llr_fwd for s, w in zip(stream[3:], window[3:], strict=True)])
    assert np.abs(later).max() > 1e-4  # the streamed ones saw more than 256 bases


def test_identities(checkpoint: Path, genome: tuple[Path, str], tmp_path: Path) -> None:
    path, sequence = genome
    lm = TitansLM.from_pretrained(checkpoint)
    snvs = [(p, sequence[p - 1], "A" if sequence[p - 1] != "A" else "C") for p in (50, 900, 2950)]
    same = score_variants(lm, path, [("c1", 900, sequence[899], sequence[899])], context=None)
    assert same[0].llr == 0 and same[0].llr_fwd == 0
    # on the reverse-complemented genome the strands swap
    rc_path = tmp_path / "rc.fa"
    rc_path.write_text(f">c1\n{_rc(sequence)}\n")
    pysam.faidx(str(rc_path))
    length = len(sequence)
    forward = score_variants(lm, path, [("c1", p, r, a) for p, r, a in snvs], context=None)
    mirrored = [("c1", length - p + 1, _rc(r), _rc(a)) for p, r, a in snvs]
    reverse = score_variants(lm, rc_path, mirrored, context=None)
    for f, r in zip(forward, reverse, strict=True):
        assert f.llr_fwd == pytest.approx(r.llr_rev, abs=1e-4)
        assert f.llr_rev == pytest.approx(r.llr_fwd, abs=1e-4)


def test_output_vcf_keeps_records_and_is_indexed(
    checkpoint: Path, genome: tuple[Path, str], tmp_path: Path
) -> None:
    path, sequence = genome
    rows = [
        ("c1", 1, sequence[0], "A" if sequence[0] != "A" else "C", "AF=0.1"),  # the first base
        ("c1", 500, sequence[499], f"{'A' if sequence[499] != 'A' else 'C'},<DEL>", "AF=0.1,0.2"),
        ("c1", 800, sequence[799], "*", "AF=0.3"),
        ("c1", 3000, sequence[2999], "G" if sequence[2999] != "G" else "T", "AF=0.4"),  # the last
    ]
    vcf = write_vcf(tmp_path / "in.vcf", rows, {"c1": len(sequence)})
    out = tmp_path / "out.vcf.gz"
    assert run(vcf, path, checkpoint, out, "--tsv", str(tmp_path / "o.tsv")) == 0
    with pysam.VariantFile(str(out)) as reader:
        assert {"TITANS_LLR", "TITANS_LLR_FWD", "TITANS_LLR_REV", "TITANS_SKIP"} <= set(
            reader.header.info
        )
        records = list(reader)
        assert [r.pos for r in records] == [1, 500, 800, 3000]
        assert records[1].info["TITANS_SKIP"] == (".", "symbolic")
        assert records[2].info["TITANS_SKIP"] == ("spanning_deletion",)
        assert all(math.isfinite(r.info["TITANS_LLR"][0]) for r in (records[0], records[3]))
    with pysam.TabixFile(str(out)) as tabix:
        assert len(list(tabix.fetch("c1", 400, 900))) == 2


def test_plain_gzip_is_read(checkpoint: Path, genome: tuple[Path, str], tmp_path: Path) -> None:
    import gzip

    path, sequence = genome
    vcf = write_vcf(tmp_path / "in.vcf", [("c1", 100, sequence[99], "N", ".")],
                    {"c1": len(sequence)})  # fmt: skip
    plain = tmp_path / "in.vcf.gz"
    plain.write_bytes(gzip.compress(vcf.read_bytes()))
    assert run(plain, path, checkpoint, tmp_path / "o.vcf.gz") == 0


@pytest.mark.parametrize(
    ("rows", "contigs", "message"),
    [
        ([("c1", 100, "ACGTA", "A", ".")], {"c1": 3000}, "does not match the genome"),
        ([("c9", 100, "A", "C", ".")], {"c9": 3000}, "contig 'c9' is not in the genome"),
    ],
)
def test_bad_records_fail_with_the_line(
    checkpoint: Path, genome: tuple[Path, str], tmp_path: Path, capsys, rows, contigs, message
) -> None:
    path, sequence = genome
    if message.startswith("does not"):
        rows = [("c1", 100, "T" if sequence[99] != "T" else "G", "A", ".")]
    vcf = write_vcf(tmp_path / "bad.vcf", rows, contigs)
    assert run(vcf, path, checkpoint, tmp_path / "o.vcf.gz") == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and "line 5" in err
    assert not (tmp_path / "o.vcf.gz").exists()


def test_ref_mismatch_skip_and_unusual_files(
    checkpoint: Path, genome: tuple[Path, str], shared_data: Path, tmp_path: Path, capsys
) -> None:
    path, sequence = genome
    wrong = "T" if sequence[99] != "T" else "G"
    vcf = write_vcf(tmp_path / "m.vcf", [("c1", 100, wrong, "A", ".")], {"c1": 3000})
    assert run(vcf, path, checkpoint, tmp_path / "m.vcf.gz", "--ref-mismatch", "skip") == 0
    with pysam.VariantFile(str(tmp_path / "m.vcf.gz")) as reader:
        assert next(iter(reader)).info["TITANS_SKIP"] == ("ref_mismatch",)
    empty = write_vcf(tmp_path / "empty.vcf", [], {"c1": 3000})
    assert run(empty, path, checkpoint, tmp_path / "e.vcf.gz") == 0
    symbolic = write_vcf(tmp_path / "s.vcf", [("c1", 10, sequence[9], "<DEL>", ".")], {"c1": 3000})
    assert run(symbolic, path, checkpoint, tmp_path / "s.vcf.gz") == 0
    multi = shared_data / "variants" / "multiallelic.vcf"
    assert run(multi, path, checkpoint, tmp_path / "x.vcf.gz") == 3
    assert "contig '1' is not in the genome" in capsys.readouterr().err
    malformed = tmp_path / "bad.vcf"
    malformed.write_text(write_vcf(tmp_path / "ok.vcf", [], {"c1": 3000}).read_text()
                         + "c1\tnot-a-number\t.\tA\tC\t.\tPASS\t.\n")  # fmt: skip
    assert run(malformed, path, checkpoint, tmp_path / "b.vcf.gz") == 3
    assert "line" in capsys.readouterr().err


def test_the_api_reads_each_contig_once(
    checkpoint: Path, genome: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a contig is tens of Mbp: reading it per variant made the API 5x slower than the command
    path, sequence = genome
    fetched: list[str] = []

    class Counting:
        def __init__(self, fasta: pysam.FastaFile) -> None:
            self.fasta = fasta

        def __getattr__(self, name: str):
            return getattr(self.fasta, name)

        def fetch(self, chrom: str) -> str:
            fetched.append(chrom)
            return self.fasta.fetch(chrom)

    @contextmanager
    def counting_fasta(genome_path):
        with pysam.FastaFile(str(genome_path)) as fasta:
            yield Counting(fasta)

    monkeypatch.setattr("pipeline.variants.score.open_indexed_fasta", counting_fasta)
    variants = [("c1", p, sequence[p - 1], "G" if sequence[p - 1] != "G" else "T")
                for p in range(100, 2900, 200)]  # fmt: skip
    scores = score_variants(TitansLM.from_pretrained(checkpoint), path, variants, window=32)
    assert all(math.isfinite(s.llr) for s in scores)
    assert len(fetched) <= 2  # once to check REF, once to score
