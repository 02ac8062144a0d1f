"""Readers on real files, checked against an independent route to the same bases."""

from __future__ import annotations

import gzip
import logging
import threading
from pathlib import Path

import pysam
import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from pipeline.errors import PipelineError
from pipeline.io import (
    SequenceRecord,
    detect_format,
    open_indexed_fasta,
    read_bed_sequences,
    read_sequences,
)
from pipeline.io.bed import reverse_complement_bytes
from pipeline.io.indexed import verified_index
from pipeline.io.prefetch import prefetched
from pipeline.io.sequences import read_sequence_pieces


def parse_fasta_text(data: bytes) -> dict[str, bytes]:
    """A plain Python FASTA parser: name (first word) to bases, line breaks removed."""
    records: dict[str, bytes] = {}
    for chunk in data.replace(b"\r", b"").split(b"\n>"):
        header, _, body = chunk.lstrip(b">").partition(b"\n")
        records[header.split()[0].decode()] = body.replace(b"\n", b"")
    return records


def as_dict(records) -> dict[str, bytes]:
    return {r.name: r.sequence for r in records}


def genome(shared_data: Path, name: str) -> Path:
    return shared_data / "genomes" / name


def write_genbank(path: Path, fmt: str, records: list[tuple[str, str]]) -> None:
    items = [
        SeqRecord(Seq(seq), id=rid, name=rid.split(".")[0], annotations={"molecule_type": "DNA"})
        for rid, seq in records
    ]
    with path.open("w") as handle:
        SeqIO.write(items, handle, fmt)


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("genomes/lambda_phage.fa.gz", "fasta"),
        ("genomes/human_grch37_chr20.fa.gz", "fasta"),
        ("fixtures/ce.fa", "fasta"),
        ("fixtures/range.bam", "bam"),
        ("fixtures/range.cram", "cram"),
    ],
)
def test_detect_format_of_real_files(shared_data: Path, relative: str, fmt: str) -> None:
    assert detect_format(shared_data / relative) == fmt


def test_detect_format_of_text_formats(tmp_path: Path) -> None:
    files = {
        "reads": (b"@r1\nACGT\n+\nIIII\n", "fastq"),
        "genbank": (b"LOCUS       X1   4 bp    DNA\n", "genbank"),
        "embl": (b"ID   X1; SV 1; linear; DNA; STD; UNC; 4 BP.\n", "embl"),
        "regions": (b"track name=x\n# comment\nchr1\t10\t20\tname\t0\t-\n", "bed"),
        "aligned": (b"@HD\tVN:1.6\n", "sam"),
        "spaced": (b"\n\n  >a\nAC\n", "fasta"),
    }
    for name, (content, fmt) in files.items():
        (tmp_path / name).write_bytes(content)
        assert detect_format(tmp_path / name) == fmt, name
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(content))
        assert detect_format(tmp_path / f"{name}.gz") == fmt, f"{name}.gz"


def test_single_record_gzip_fasta(shared_data: Path) -> None:
    path = genome(shared_data, "lambda_phage.fa.gz")
    records = list(read_sequences(path))
    assert len(records) == 1 and isinstance(records[0], SequenceRecord)
    assert as_dict(records) == parse_fasta_text(gzip.decompress(path.read_bytes()))
    assert len(records[0].sequence) == 48502


def test_multi_record_fasta(shared_data: Path) -> None:
    path = genome(shared_data, "vcholerae_o395.fa.gz")
    records = as_dict(read_sequences(path))
    assert [len(s) for s in records.values()] == [3024078, 1111222]
    assert records == parse_fasta_text(gzip.decompress(path.read_bytes()))


def test_lowercase_genome_keeps_case(shared_data: Path) -> None:
    path = genome(shared_data, "pfalciparum_3d7.fa.gz")
    first = next(iter(read_sequences(path)))
    assert first.sequence == first.sequence.lower() and len(first.sequence) > 500_000


def test_crlf_fasta_reads_like_lf(tmp_path: Path) -> None:
    lf = b">a desc\nACGTacgt\nNNRY\n>b\nGG\n"
    (tmp_path / "lf.fa").write_bytes(lf)
    (tmp_path / "crlf.fa").write_bytes(lf.replace(b"\n", b"\r\n"))
    expected = {"a": b"ACGTacgtNNRY", "b": b"GG"}
    assert as_dict(read_sequences(tmp_path / "crlf.fa")) == expected
    assert as_dict(read_sequences(tmp_path / "lf.fa")) == expected


def test_fastq_plain_and_gzip(tmp_path: Path) -> None:
    content = b"@r1 sample\nACGT\n+\nIIII\n@r2\nacNN\n+\nIIII\n"
    (tmp_path / "a.fq").write_bytes(content)
    (tmp_path / "a.fq.gz").write_bytes(gzip.compress(content))
    for name in ("a.fq", "a.fq.gz"):
        assert as_dict(read_sequences(tmp_path / name)) == {"r1": b"ACGT", "r2": b"acNN"}


def test_indexed_bgzip_random_access(shared_data: Path) -> None:
    path = genome(shared_data, "human_grch37_chr20.fa.gz")
    start, stop = 31_000_123, 31_004_219
    with open_indexed_fasta(path, build_index=False) as fasta:
        assert list(fasta.references) == ["20"] and list(fasta.lengths) == [63_025_520]
        fetched = fasta.fetch("20", start, stop).encode()
    # Independent route: decompress with Python's gzip and count 60-base lines + header.
    first_line = 61 * (start // 60) + start % 60 + len(b">20\n")
    with gzip.open(path) as handle:
        handle.seek(first_line)
        raw = handle.read(2 * (stop - start))
    assert fetched == raw.replace(b"\n", b"")[: stop - start]
    assert len(fetched) == stop - start and set(fetched) <= set(b"ACGTNacgtn")


def test_index_is_built_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "g.fa"
    path.write_bytes(b">c1\nACGTACGTAC\nGT\n>c2\nTTTT\n")
    with open_indexed_fasta(path) as fasta:
        assert fasta.fetch("c1", 8, 12) == "ACGT"
    assert (tmp_path / "g.fa.fai").is_file()


def test_index_not_built_when_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "g.fa"
    path.write_bytes(b">c1\nACGT\n")
    with pytest.raises(PipelineError, match=r"g\.fa: no \.fai index"):
        open_indexed_fasta(path, build_index=False)
    assert not (tmp_path / "g.fa.fai").exists()


def test_index_that_does_not_match_the_genome(tmp_path: Path) -> None:
    path = tmp_path / "g.fa"
    path.write_bytes(b">c1\nACGTACGT\n>c2\nTTTT\n")
    pysam.faidx(str(path))
    path.write_bytes(b">c1\nACGTACGTAA\n>c2\nTTTT\n")  # edited after indexing
    with pytest.raises(PipelineError, match="does not match the file"):
        open_indexed_fasta(path)
    duplicated = tmp_path / "dup.fa"
    duplicated.write_bytes(b">c1\nACGT\n>c1\nTTTT\n")  # htslib indexes the first c1 only
    with pytest.raises(PipelineError, match="duplicate record names"):
        open_indexed_fasta(duplicated)


def test_plain_gzip_fasta_cannot_be_indexed(shared_data: Path) -> None:
    with pytest.raises(PipelineError, match="recompress it with bgzip"):
        open_indexed_fasta(genome(shared_data, "lambda_phage.fa.gz"))


def test_bam_reads_named_per_mate(shared_data: Path) -> None:
    path = shared_data / "fixtures" / "range.bam"
    records = as_dict(read_sequences(path))
    expected = {}
    with pysam.AlignmentFile(str(path)) as bam:
        for read in bam.fetch(until_eof=True):
            mate = "/1" if read.is_read1 else "/2"
            sequence = read.query_sequence.encode()
            if read.is_reverse:  # stored on the forward strand: back to the read's orientation
                sequence = reverse_complement_bytes(sequence)
            expected[read.query_name + mate] = sequence
    assert len(records) == 112 and records == expected


def test_cram_with_reference_equals_bam(shared_data: Path) -> None:
    fixtures = shared_data / "fixtures"
    cram = as_dict(read_sequences(fixtures / "range.cram", reference=fixtures / "ce.fa"))
    assert cram == as_dict(read_sequences(fixtures / "range.bam"))


def test_sam_text(shared_data: Path, tmp_path: Path) -> None:
    bam = shared_data / "fixtures" / "range.bam"
    sam = tmp_path / "range.sam"
    with (
        pysam.AlignmentFile(str(bam)) as source,
        pysam.AlignmentFile(str(sam), "w", template=source) as out,
    ):
        for read in source.fetch(until_eof=True):
            out.write(read)
    assert detect_format(sam) == "sam"
    assert as_dict(read_sequences(sam)) == as_dict(read_sequences(bam))


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
@pytest.mark.parametrize("compressed", [False, True])
def test_genbank_and_embl(tmp_path: Path, fmt: str, compressed: bool) -> None:
    path = tmp_path / f"x.{fmt}"
    write_genbank(path, fmt, [("X1.1", "ACGTacgtNNRY"), ("X2.3", "GGGCCC")])
    if compressed:
        path = path.with_suffix(".gz")
        path.write_bytes(gzip.compress((tmp_path / f"x.{fmt}").read_bytes()))
    assert detect_format(path) == fmt
    # These formats carry no soft-mask: case is not kept.
    assert as_dict(read_sequences(path)) == {"X1.1": b"ACGTACGTNNRY", "X2.3": b"GGGCCC"}


def test_explicit_format_skips_detection(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b">a\nAC\n")
    assert as_dict(read_sequences(path, fmt="fasta")) == {"a": b"AC"}
    with pytest.raises(ValueError, match="fmt must be"):
        read_sequences(path, fmt="fasta2")


def test_bed_intervals_strand_aware(tmp_path: Path) -> None:
    genome_fa = tmp_path / "genome.fa"
    genome_fa.write_bytes(b">chr1 test\nAACCGGTTac\ngtRYKM\n>chr2\nNNNN\n")
    bed = tmp_path / "regions.bed"
    bed.write_bytes(
        b"track name=test\n#chrom\tstart\tend\n"
        b"chr1\t0\t4\n"
        b"chr1\t2\t12\tr2\t0\t-\n"
        b"chr1\t12\t16\tr3\t0\t+\n"
        b"chr2\t0\t4\tr4\t0\t.\n"
    )
    records = list(read_bed_sequences(bed, genome_fa))
    assert [r.name for r in records] == [
        "chr1:1-4(+)",
        "chr1:3-12(-)",
        "chr1:13-16(+)",
        "chr2:1-4(+)",
    ]
    bases = parse_fasta_text(genome_fa.read_bytes())
    assert records[0].sequence == b"AACC"
    assert records[1].sequence == b"acgtAACCGG"  # reverse complement of CCGGTTacgt
    assert records[1].sequence == reverse_complement_bytes(bases["chr1"][2:12])
    assert records[2].sequence == b"RYKM"
    assert as_dict(read_sequences(bed, reference=genome_fa)) == as_dict(records)


def test_reverse_complement_bytes_iupac_and_case() -> None:
    assert reverse_complement_bytes(b"ACGTRYKMBVDHSWNacgtrykmbvdhswn") == (
        b"nwsdhbvkmryacgtNWSDHBVKMRYACGT"
    )


def test_segments_of_an_indexed_fasta_equal_its_records(shared_data: Path) -> None:
    path = shared_data / "fixtures" / "ce.fa"
    entries = verified_index(path)
    assert entries is not None and entries[0].name == "CHROMOSOME_I"
    pieces = list(read_sequence_pieces(path, segment=1 << 16))
    assert len(pieces) > 16  # CHROMOSOME_I (1 Mbp) comes in 64 kbp segments
    assert all(p.offset % (1 << 16) == 0 and len(p.data) <= 1 << 16 for p in pieces)
    joined: dict[str, bytes] = {}
    for piece in pieces:
        assert piece.offset == len(joined.get(piece.name, b""))
        joined[piece.name] = joined.get(piece.name, b"") + piece.data
    assert joined == as_dict(read_sequences(path))


def test_segments_of_bgzip_fasta(tmp_path: Path) -> None:
    plain = tmp_path / "g.fa"
    plain.write_bytes(b">a\n" + b"ACGTTGCA" * 40_000 + b"\n>b x\n" + b"GATTACA\n" * 500)
    bgzip = tmp_path / "g.fa.gz"
    pysam.tabix_compress(str(plain), str(bgzip))
    pysam.faidx(str(bgzip))
    assert verified_index(bgzip) is not None
    pieces = list(read_sequence_pieces(bgzip, segment=1 << 15))
    assert len({p.name for p in pieces}) == 2 and len(pieces) > 10
    assert b"".join(p.data for p in pieces if p.name == "a") == b"ACGTTGCA" * 40_000
    assert b"".join(p.data for p in pieces if p.name == "b") == b"GATTACA" * 500
    (tmp_path / "g.fa.gz.gzi").write_bytes((7).to_bytes(8, "little") + bytes(16))  # damaged
    assert verified_index(bgzip) is None


def test_index_that_does_not_tile_the_file_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "g.fa"
    path.write_bytes(b">a\nACGT\n>b\nTTTT\n")
    pysam.faidx(str(path))
    assert verified_index(path) is not None
    path.write_bytes(b">a\nACGTA\n>b\nTTTT\n")  # edited after indexing: the index is stale
    assert verified_index(path) is None
    pieces = list(read_sequence_pieces(path, segment=8))
    assert [(p.name, p.data) for p in pieces] == [("a", b"ACGTA"), ("b", b"TTTT")]


def test_prefetched_keeps_order_and_raises_producer_errors() -> None:
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise PipelineError("boom")

    stream = prefetched(failing())
    assert next(stream) == 1
    with pytest.raises(PipelineError, match="boom"):
        next(stream)


def test_prefetched_stops_its_producer_when_abandoned() -> None:
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = prefetched(endless())
    assert next(stream) == 0
    stream.close()
    assert closed.wait(5)


def test_reads_without_sequence_are_skipped_with_a_warning(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = shared_data / "fixtures" / "range.bam"
    bam = tmp_path / "noseq.bam"
    with (
        pysam.AlignmentFile(str(source)) as reads,
        pysam.AlignmentFile(str(bam), "wb", template=reads) as out,
    ):
        for i, read in enumerate(reads.fetch(until_eof=True)):
            if i < 2:
                read.query_sequence = None
            out.write(read)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert len(list(read_sequences(bam))) == 110
    assert "skipped 2 reads" in caplog.text
