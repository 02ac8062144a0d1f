"""Bad inputs: exit code 2, one line naming the file and the problem, and no output left.

Each case runs `titans-dna tokenize` through `pipeline.cli.main`; capfd also catches anything
htslib would print to the process's stderr, so the message must be the only line.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pysam
import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.io import read_bed_sequences, read_sequences

PREFIX = "titans-dna tokenize: error: "


def tokenize(capfd: pytest.CaptureFixture, tmp_path: Path, *args: object) -> tuple[int, str, Path]:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    capfd.readouterr()
    code = main(["tokenize", *map(str, args), "-o", str(out_dir / "store.h5")])
    return code, capfd.readouterr().err, out_dir


def assert_failed_cleanly(result: tuple[int, str, Path], path: Path | str, *problem: str) -> None:
    code, err, out_dir = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3, err
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX + str(path)), lines[0]
    for words in problem:
        assert words in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []  # neither the store nor a temporary file


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_empty_file(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "empty.fa", b"")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "empty file")


def test_empty_gzip(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "empty.fa.gz", gzip.compress(b""))
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "empty file")


def test_fasta_without_header_line(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "nohead.fa", b"ACGTACGT\nACGT\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "no header line")


def test_binary_junk(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "junk.fa", bytes(range(256)) * 16)
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "binary data")


def test_truncated_gzip(tmp_path: Path, capfd) -> None:
    whole = gzip.compress(b">a\n" + b"ACGTTGCAAC" * 50_000 + b"\n>b\nACGT\n")
    bad = write(tmp_path / "cut.fa.gz", whole[: len(whole) // 2])
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "truncated")


def test_bgzip_without_end_of_file_block(shared_data: Path, tmp_path: Path, capfd) -> None:
    whole = (shared_data / "genomes" / "human_grch37_chr20.fa.gz").read_bytes()
    bad = write(tmp_path / "cut.fa.gz", whole[:200_000])
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "truncated", "end-of-file")


def test_truncated_bam(shared_data: Path, tmp_path: Path, capfd) -> None:
    bad = shared_data / "fixtures" / "truncated.bam"
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "truncated BAM")
    with pytest.raises(PipelineError, match="truncated"):
        list(read_sequences(bad))


@pytest.mark.parametrize(("char", "offset"), [(b"7", 13), (b"*", 13)])
def test_sequence_with_digit_or_star(tmp_path: Path, capfd, char: bytes, offset: int) -> None:
    bad = write(tmp_path / "bad.fa", b">ok\nACGT\n>chr2 x\nACGTACGTAC\nACG" + char + b"T\n")
    shown = repr(char.decode())
    assert_failed_cleanly(
        tokenize(capfd, tmp_path, bad),
        bad,
        "record 'chr2'",
        f"invalid byte {shown} at sequence offset {offset}",
        "--invalid n",
    )


def test_non_text_byte_in_sequence(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "bad.fa", b">r1\nACGT\xffACGT\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "record 'r1'", "0xff", "offset 4")


def test_duplicate_record_names(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "dup.fa", b">a\nACGT\n>b\nAC\n>a other\nGG\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "duplicate record name 'a'")


def test_duplicate_names_in_an_indexed_bgzip(tmp_path: Path, capfd) -> None:
    # htslib indexes only the first of two equal names; the store must not drop the second.
    plain = write(tmp_path / "dup.fa", b">a\n" + b"ACGT" * 2_000_000 + b"\n>a\nGGGG\n")
    bad = tmp_path / "dup.fa.gz"
    pysam.tabix_compress(str(plain), str(bad))
    pysam.faidx(str(bad))
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "duplicate record name 'a'")


def test_missing_path(tmp_path: Path, capfd) -> None:
    bad = tmp_path / "absent.fa"
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "no such file")


def test_url_instead_of_file(tmp_path: Path, capfd) -> None:
    result = tokenize(capfd, tmp_path, "gopher://x/y")
    assert_failed_cleanly(result, "gopher://x/y", "is a URL", "titans-dna fetch")


def test_folder_instead_of_file(tmp_path: Path, capfd) -> None:
    bad = tmp_path / "folder.fa"
    bad.mkdir()
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "secret.fa", b">a\nACGT\n")
    bad.chmod(0)
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "cannot read")


def test_bed_interval_past_contig_end(tmp_path: Path, capfd) -> None:
    genome = write(tmp_path / "genome.fa", b">chr1\nACGTACGTAC\n>chr2\nACGT\n")
    bad = write(tmp_path / "regions.bed", b"chr1\t0\t10\nchr2\t2\t6\tname\t0\t-\n")
    assert_failed_cleanly(
        tokenize(capfd, tmp_path, bad, "--genome", genome),
        bad,
        "line 2",
        "chr2:2-6 ends past the end of chr2 (4 bp",
    )
    with pytest.raises(PipelineError, match="line 2"):
        list(read_bed_sequences(bad, genome))


def test_bed_contig_not_in_genome(tmp_path: Path, capfd) -> None:
    genome = write(tmp_path / "genome.fa", b">chr1\nACGTACGTAC\n")
    bad = write(tmp_path / "regions.bed", b"chrX\t0\t5\n")
    result = tokenize(capfd, tmp_path, bad, "--genome", genome)
    assert_failed_cleanly(result, bad, "line 1", "contig 'chrX' is not in")


def test_bed_without_genome(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "regions.bed", b"chr1\t0\t5\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "--genome")


def test_cram_without_reference(shared_data: Path, tmp_path: Path, capfd) -> None:
    bad = shared_data / "fixtures" / "range.cram"
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "--reference")
    with pytest.raises(PipelineError, match="reference"):
        list(read_sequences(bad))


def test_cram_with_a_reference_missing_its_contigs(shared_data: Path, tmp_path: Path, capfd):
    other = write(tmp_path / "other.fa", b">chrZ\nACGT\n")
    bad = shared_data / "fixtures" / "range.cram"
    result = tokenize(capfd, tmp_path, bad, "--reference", other)
    assert_failed_cleanly(result, bad, "lacks contig 'CHROMOSOME_I'")


def test_fastq_with_short_quality(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "reads.fq", b"@r1\nACGT\n+\nIIII\n@r2\nACGT\n+\nII\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "quality")


def test_bad_second_input_leaves_nothing(shared_data: Path, tmp_path: Path, capfd) -> None:
    good = shared_data / "genomes" / "lambda_phage.fa.gz"
    bad = write(tmp_path / "bad.fa", b">x\nAC-GT\n")
    result = tokenize(capfd, tmp_path, good, bad)
    assert_failed_cleanly(result, bad, "invalid byte '-'")


def test_existing_output_is_kept_on_failure(shared_data: Path, tmp_path: Path, capfd) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    store = out_dir / "store.h5"
    shutil.copy(shared_data / "fixtures" / "ce.fa.fai", store)
    before = store.read_bytes()
    bad = write(tmp_path / "bad.fa", b"")
    code, err, _ = tokenize(capfd, tmp_path, bad)
    assert code == 3 and "empty file" in err
    assert store.read_bytes() == before and list(out_dir.iterdir()) == [store]


def test_missing_output_folder(shared_data: Path, tmp_path: Path, capfd) -> None:
    good = shared_data / "genomes" / "lambda_phage.fa.gz"
    capfd.readouterr()
    code = main(["tokenize", str(good), "-o", str(tmp_path / "nowhere" / "store.h5")])
    err = capfd.readouterr().err.strip()
    assert code == 3 and err.startswith(PREFIX) and "does not exist" in err
    assert "\n" not in err


def test_headers_without_data(tmp_path: Path, capfd) -> None:
    bad = write(tmp_path / "regions.bed", b"track name=x\n# nothing else\n")
    assert_failed_cleanly(tokenize(capfd, tmp_path, bad), bad, "only header or comment lines")


def test_output_is_a_folder(shared_data: Path, tmp_path: Path, capfd) -> None:
    good = shared_data / "genomes" / "lambda_phage.fa.gz"
    capfd.readouterr()
    code = main(["tokenize", str(good), "-o", str(tmp_path)])
    err = capfd.readouterr().err.strip()
    assert (
        code == 3
        and err == f"{PREFIX}{tmp_path}: the output is a folder; give a file name such as store.h5"
    )
    assert list(tmp_path.iterdir()) == []
