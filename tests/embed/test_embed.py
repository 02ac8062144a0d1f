"""`titans-dna embed`: HDF5 layout, streaming equals one pass, inputs, strands, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pysam
import pytest
import torch

from pipeline.cli import main
from titans_dna.models import TitansLM
from titans_dna.models.classifier import TitansForSequenceClassification
from titans_dna.tokenizer import DNATokenizer

from .conftest import save_lm, tiny_config

TOKENIZER = DNATokenizer()
PHAGE_ID = "gi|9626243|ref|NC_001416.1|"  # the record name in lambda_phage.fa.gz
ROOT_ATTRS = {
    "schema_version",
    "model_config",
    "checkpoint_sha256",
    "tokenizer",
    "pooling",
    "layer",
    "dtype",
    "package_version",
    "created",
}


def embed(source: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    args = ["embed", str(source), "--checkpoint", str(checkpoint), "-o", str(out)]
    return main([*args, "--device", "cpu", *extra])


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


def one_pass_hidden(checkpoint: Path, sequence: str) -> np.ndarray:
    """Hidden states [L, D] of the whole sequence in a single forward pass (the reference)."""
    lm = TitansLM.from_pretrained(checkpoint)
    ids, _ = TOKENIZER.encode(sequence)
    with torch.no_grad():
        _, hidden, _ = lm(torch.from_numpy(ids.astype(np.int64))[None])
    return hidden[0].numpy()


def test_whole_genome_layout_and_provenance(
    lm_checkpoint: Path, lambda_phage: Path, phage_sequence: str, tmp_path: Path
) -> None:
    out = tmp_path / "phage.h5"
    assert embed(lambda_phage, lm_checkpoint, out) == 0
    with h5py.File(out, "r") as f:
        assert set(f) == {"ids", "embeddings", "lengths", "sequence_digests", "gc_content"}
        assert [x.decode() for x in f["ids"][:]] == [PHAGE_ID]
        upper = phage_sequence.upper()
        gc = (upper.count("G") + upper.count("C")) / sum(map(upper.count, "ACGT"))
        assert f["gc_content"][0] == pytest.approx(gc, rel=1e-6)
        assert f["embeddings"].shape == (1, 32) and f["embeddings"].dtype == np.float32
        assert f["lengths"][:].tolist() == [len(phage_sequence)] and f["lengths"].dtype == np.int64
        assert set(f.attrs) >= ROOT_ATTRS
        attrs = dict(f.attrs)
        embedding = f["embeddings"][0]
    assert (
        attrs["schema_version"] == 1 and attrs["pooling"] == "mean" and attrs["dtype"] == "float32"
    )
    assert json.loads(attrs["model_config"]) == tiny_config().to_dict()
    weights = (lm_checkpoint / "model.safetensors").read_bytes()
    assert attrs["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    assert attrs["tokenizer"] == TOKENIZER.version
    # Streamed in 2,048-token pieces through the recurrent state: finite and not degenerate.
    assert np.isfinite(embedding).all() and embedding.std() > 0


def test_windowed_layout_float16(
    lm_checkpoint: Path, lambda_phage: Path, phage_sequence: str, tmp_path: Path
) -> None:
    out = tmp_path / "windows.h5"
    assert (
        embed(
            lambda_phage,
            lm_checkpoint,
            out,
            "--window",
            "10000",
            "--stride",
            "7500",
            "--dtype",
            "float16",
        )
        == 0
    )
    length = len(phage_sequence)
    starts = list(range(0, length, 7500))
    starts = starts[: next(i for i, s in enumerate(starts) if s + 10000 >= length) + 1]
    with h5py.File(out, "r") as f:
        windows = f["windows"][:]
        ids = [x.decode() for x in f["ids"][:]]
        assert f["embeddings"].dtype == np.float16 and f.attrs["dtype"] == "float16"
        assert f["embeddings"].shape == (len(starts), 32)
        second = f["embeddings"][1].astype(np.float32)
        lengths = f["lengths"][:]
    assert windows["start"].tolist() == starts
    assert windows["end"].tolist() == [min(s + 10000, length) for s in starts]
    assert {c.decode() for c in windows["contig"]} == {PHAGE_ID}
    assert {s.decode() for s in windows["strand"]} == {"+"}
    assert ids[1] == f"{PHAGE_ID}:7501-17500"
    assert lengths.tolist() == (windows["end"] - windows["start"]).tolist()
    reference = one_pass_hidden(lm_checkpoint, phage_sequence[7500:17500]).mean(0)
    np.testing.assert_allclose(second, reference, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("variant", ["mac", "mal"])
@pytest.mark.parametrize("pooling", ["mean", "last", "max"])
def test_chunked_streaming_equals_single_pass(
    tmp_path: Path, phage_sequence: str, variant: str, pooling: str
) -> None:
    """Pieces of 32 tokens (150 of them, through the recurrent state) and one 8,192-token piece
    give the same pooled and per-token embeddings, equal to a plain forward pass."""
    checkpoint = save_lm(tmp_path / "lm", variant=variant)
    sequence = phage_sequence[20000:24800]
    fasta = write_fasta(tmp_path / "s.fa", {"s": sequence})
    small, large = tmp_path / "small.h5", tmp_path / "large.h5"
    common = ("--pooling", pooling, "--per-token")
    assert embed(fasta, checkpoint, small, "--piece-len", "32", *common) == 0
    assert embed(fasta, checkpoint, large, "--piece-len", "8192", *common) == 0
    hidden = one_pass_hidden(checkpoint, sequence)
    expected = {"mean": hidden.mean(0), "last": hidden[-1], "max": hidden.max(0)}[pooling]
    with h5py.File(small, "r") as a, h5py.File(large, "r") as b:
        for f in (a, b):
            np.testing.assert_allclose(f["embeddings"][0], expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(f["token_embeddings"][:], hidden, rtol=1e-4, atol=1e-5)
        assert a.attrs["piece_len"] == 32 and b.attrs["piece_len"] == 8192


def test_batches_of_mixed_lengths_equal_sequences_alone(
    lm_checkpoint: Path, phage_sequence: str, tmp_path: Path
) -> None:
    records = {f"r{n}": phage_sequence[n : n + n * 7 + 5] for n in (1, 40, 400, 90, 3, 700)}
    fasta = write_fasta(tmp_path / "mixed.fa", records)
    out = tmp_path / "mixed.h5"
    assert embed(fasta, lm_checkpoint, out, "--per-token", "--batch-tokens", "256") == 0
    with h5py.File(out, "r") as f:
        assert [x.decode() for x in f["ids"][:]] == list(records)  # input order kept
        offsets = f["offsets"][:]
        assert offsets.tolist() == [0, *np.cumsum([len(s) for s in records.values()]).tolist()]
        for i, sequence in enumerate(records.values()):
            hidden = one_pass_hidden(lm_checkpoint, sequence)
            rows = f["token_embeddings"][offsets[i] : offsets[i + 1]]
            np.testing.assert_allclose(rows, hidden, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(f["embeddings"][i], hidden.mean(0), rtol=1e-4, atol=1e-5)


def test_rc_average_is_strand_symmetric(
    lm_checkpoint: Path, phage_sequence: str, tmp_path: Path
) -> None:
    sequence = phage_sequence[5000:5700]
    ids, _ = TOKENIZER.encode(sequence)
    reverse = TOKENIZER.decode(TOKENIZER.reverse_complement(ids))
    fasta = write_fasta(tmp_path / "two.fa", {"fwd": sequence, "rev": reverse})
    out = tmp_path / "rc.h5"
    assert embed(fasta, lm_checkpoint, out, "--rc-average", "--per-token", "--piece-len", "64") == 0
    with h5py.File(out, "r") as f:
        pooled = f["embeddings"][:]
        tokens = f["token_embeddings"][:]
    np.testing.assert_allclose(pooled[0], pooled[1], rtol=1e-4, atol=1e-5)
    # Per token, both strands' views of a base are averaged: the rows of the reverse record
    # are those of the forward record read backwards.
    np.testing.assert_allclose(tokens[:700], tokens[700:][::-1], rtol=1e-4, atol=1e-5)
    forward = one_pass_hidden(lm_checkpoint, sequence)
    backward = one_pass_hidden(lm_checkpoint, reverse)[::-1]
    np.testing.assert_allclose(tokens[:700], (forward + backward) / 2, rtol=1e-4, atol=1e-5)


def test_fastq_and_bam_inputs(
    lm_checkpoint: Path, shared_data: Path, phage_sequence: str, tmp_path: Path
) -> None:
    reads = {f"read{i}": phage_sequence[i * 97 : i * 97 + 60 + i] for i in range(12)}
    fastq = tmp_path / "reads.fq"
    fastq.write_text("".join(f"@{n}\n{s}\n+\n{'I' * len(s)}\n" for n, s in reads.items()))
    out = tmp_path / "fq.h5"
    assert embed(fastq, lm_checkpoint, out) == 0
    with h5py.File(out, "r") as f:
        assert [x.decode() for x in f["ids"][:]] == list(reads)
        assert f["lengths"][:].tolist() == [len(s) for s in reads.values()]

    bam = shared_data / "fixtures" / "range.bam"
    with pysam.AlignmentFile(str(bam), "rb") as handle:
        count = sum(1 for r in handle.fetch(until_eof=True) if r.query_sequence)
    out = tmp_path / "bam.h5"
    assert embed(bam, lm_checkpoint, out) == 0
    with h5py.File(out, "r") as f:
        assert f["embeddings"].shape == (count, 32)
        assert np.isfinite(f["embeddings"][:]).all()
        from_bam = f["embeddings"][:]

    cram, reference = shared_data / "fixtures" / "range.cram", shared_data / "fixtures" / "ce.fa"
    out = tmp_path / "cram.h5"
    assert embed(cram, lm_checkpoint, out, "--reference", str(reference)) == 0
    with h5py.File(out, "r") as f:  # the same reads, decoded against their reference
        np.testing.assert_allclose(f["embeddings"][:], from_bam, rtol=1e-5, atol=1e-6)


def test_a_classifier_checkpoint_embeds_with_its_language_model(
    lm_checkpoint: Path, phage_sequence: str, tmp_path: Path
) -> None:
    classifier = TitansForSequenceClassification.from_pretrained_backbone(lm_checkpoint, 2)
    classifier.save_pretrained(tmp_path / "clf")
    fasta = write_fasta(tmp_path / "s.fa", {"s": phage_sequence[:500]})
    for strands in ("--rc-average", "--no-rc-average"):
        assert embed(fasta, tmp_path / "clf", tmp_path / "a.h5", strands) == 0
        assert embed(fasta, lm_checkpoint, tmp_path / "b.h5", strands) == 0
        with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(tmp_path / "b.h5", "r") as b:
            np.testing.assert_allclose(a["embeddings"][:], b["embeddings"][:], rtol=1e-6)
        (tmp_path / "a.h5").unlink()
        (tmp_path / "b.h5").unlink()


def test_the_strand_default_follows_the_checkpoint(
    lm_checkpoint: Path, phage_sequence: str, tmp_path: Path
) -> None:
    # A fine-tuned classifier averages both strands unless told otherwise; a language model
    # embeds the forward strand.
    classifier = TitansForSequenceClassification.from_pretrained_backbone(lm_checkpoint, 2)
    classifier.save_pretrained(tmp_path / "clf")
    fasta = write_fasta(tmp_path / "s.fa", {"s": phage_sequence[:500]})
    for checkpoint, expected in (
        (tmp_path / "clf", "--rc-average"),
        (lm_checkpoint, "--no-rc-average"),
    ):
        assert embed(fasta, checkpoint, tmp_path / "default.h5") == 0
        assert embed(fasta, checkpoint, tmp_path / "explicit.h5", expected) == 0
        with h5py.File(tmp_path / "default.h5") as a, h5py.File(tmp_path / "explicit.h5") as b:
            np.testing.assert_array_equal(a["embeddings"][:], b["embeddings"][:])
        (tmp_path / "default.h5").unlink()
        (tmp_path / "explicit.h5").unlink()


def error_line(capsys: pytest.CaptureFixture) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("titans-dna embed: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("content", "extra", "needle"),
    [
        ("", (), "empty"),
        (">s\nACGT\n", ("--piece-len", "48"), "multiple of 32"),
        (">s\nAC-T\n", (), "invalid byte '-'"),
        (">s\nACGT\n", ("--stride", "5"), "--stride needs --window"),
    ],
)
def test_bad_input_exits_2_and_leaves_no_file(
    lm_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    content: str,
    extra: tuple[str, ...],
    needle: str,
) -> None:
    fasta = tmp_path / "in.fa"
    fasta.write_text(content)
    out = tmp_path / "out.h5"
    assert embed(fasta, lm_checkpoint, out, *extra) == 3
    assert needle in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fa"]


def test_output_in_a_missing_folder(
    lm_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"s": "ACGT"})
    assert embed(fasta, lm_checkpoint, tmp_path / "nowhere" / "out.h5") == 3
    assert "does not exist" in error_line(capsys)


def test_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fasta = write_fasta(tmp_path / "in.fa", {"s": "ACGT"})
    assert embed(fasta, tmp_path / "no-model", tmp_path / "out.h5") == 3
    assert "checkpoint not found" in error_line(capsys)


def test_a_checkpoint_with_another_tokenizer(
    lm_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(lm_checkpoint, model)
    (model / "tokenizer.json").write_text(json.dumps({"tokenizer_class": "BPETokenizer"}))
    fasta = write_fasta(tmp_path / "in.fa", {"s": "ACGT"})
    assert embed(fasta, model, tmp_path / "out.h5") == 3
    assert "not a DNATokenizer" in error_line(capsys)
