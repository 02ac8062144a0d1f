"""Token store: layout and attributes, contents against independent decoding, windows, errors."""

from __future__ import annotations

import gzip
import json
import logging
import multiprocessing
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pysam
import pytest

from pipeline import __version__
from pipeline.errors import PipelineError
from pipeline.io.sequences import SEGMENT_BASES, read_sequence_pieces
from pipeline.tokenstore import (
    STORE_FORMAT,
    TOKEN_CHUNK,
    ContigInfo,
    TokenStore,
    dataset_key,
    write_token_store,
)
from titans_dna.tokenizer import DNATokenizer

tok = DNATokenizer()


def manifest_sha256(shared_data: Path, relative: str) -> str:
    for line in (shared_data / "MANIFEST.tsv").read_text().splitlines()[1:]:
        path, _, digest = line.split("\t")
        if path == relative:
            return digest
    raise KeyError(relative)


def fasta_text(path: Path) -> dict[str, str]:
    """Name to bases (case kept), read with Python's gzip: a route independent of pysam."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    records = {}
    for chunk in data.decode().split("\n>"):
        header, _, body = chunk.lstrip(">").partition("\n")
        records[header.split()[0]] = body.replace("\n", "")
    return records


@pytest.fixture(scope="module")
def store_path(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store") / "genomes.h5"
    genomes = shared_data / "genomes"
    write_token_store([genomes / "lambda_phage.fa.gz", genomes / "vcholerae_o395.fa.gz"], out)
    return out


@pytest.fixture()
def store(store_path: Path):
    with TokenStore(store_path) as opened:
        yield opened


def test_layout_and_attributes(store_path: Path, shared_data: Path) -> None:
    with h5py.File(store_path, "r") as h5:
        assert h5.attrs["format"] == STORE_FORMAT and h5.attrs["format_version"] == 1
        assert h5.attrs["tokenizer_version"] == tok.version
        assert json.loads(h5.attrs["tokenizer"])["vocab"] == tok.vocab
        assert h5.attrs["package_version"] == __version__ and h5.attrs["created"]
        assert list(h5.attrs["inputs"]) == ["lambda_phage", "vcholerae_o395"]
        group = h5["vcholerae_o395"]
        assert group.attrs["sha256"] == manifest_sha256(shared_data, "genomes/vcholerae_o395.fa.gz")
        assert group.attrs["source_path"].endswith("genomes/vcholerae_o395.fa.gz")
        assert group.attrs["format"] == "fasta"
        assert list(group.attrs["contig_lengths"]) == [3024078, 1111222]
        first = group.attrs["contig_names"][0]
        tokens = group["tokens"][dataset_key(first)]
        assert tokens.dtype == np.uint8 and tokens.chunks == (TOKEN_CHUNK,)
        assert tokens.compression is None and tokens.scaleoffset == 0
        assert group["softmask"][dataset_key(first)].shape == ((3024078 + 7) // 8,)


def test_contents_equal_independent_decoding(store: TokenStore, shared_data: Path) -> None:
    expected = fasta_text(shared_data / "genomes" / "lambda_phage.fa.gz")
    expected |= fasta_text(shared_data / "genomes" / "vcholerae_o395.fa.gz")
    seen = []
    for info, ids, soft in store.iter_contigs():
        assert ids.dtype == np.uint8 and soft.dtype == np.bool_ and len(ids) == info.length
        assert tok.decode(ids, soft) == expected[info.name]
        seen.append(info.name)
    assert seen == list(expected) == [c.name for c in store.contigs]
    assert [c.source for c in store.contigs] == ["lambda_phage"] + ["vcholerae_o395"] * 2


def test_input_info(store: TokenStore, shared_data: Path) -> None:
    lam = store.inputs[0]
    assert lam.source == "lambda_phage" and lam.contigs == 1 and lam.bases == 48502
    assert lam.sha256 == manifest_sha256(shared_data, "genomes/lambda_phage.fa.gz")
    assert store.tokenizer_version == tok.version


def test_windows_both_strands(store: TokenStore) -> None:
    rng = np.random.default_rng(0)
    whole = store.contig_tokens(1)
    for _ in range(200):
        length = int(rng.integers(0, 3 * TOKEN_CHUNK))
        start = int(rng.integers(0, store.contigs[1].length - length + 1))
        ids, soft = store.window(1, start, length)
        assert np.array_equal(ids, whole[start : start + length]) and not soft.any()
        rc_ids, rc_soft = store.window(1, start, length, strand="-")
        assert np.array_equal(rc_ids, tok.reverse_complement(whole[start : start + length]))
        assert rc_ids.flags.c_contiguous and rc_soft.shape == (length,)
    end = store.contigs[1].length
    assert np.array_equal(store.window(1, end - 5, 5)[0], whole[-5:])


@pytest.mark.parametrize(("start", "length"), [(-1, 5), (0, -1), (3024070, 10)])
def test_window_outside_the_contig(store: TokenStore, start: int, length: int) -> None:
    with pytest.raises(ValueError, match="outside contig"):
        store.window(1, start, length)


def test_window_strand_must_be_plus_or_minus(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="strand"):
        store.window(0, 0, 10, strand=".")


def test_softmask_windows_at_any_offset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    bases = rng.choice(list("ACGTN"), size=50_000)
    lower = np.zeros(bases.size, dtype=bool)
    for start in rng.integers(0, bases.size, 60):
        lower[start : start + int(rng.integers(1, 900))] = True
    text = "".join(np.where(lower, np.char.lower(bases), bases))
    fasta = tmp_path / "mixed.fa"
    fasta.write_text(f">mixed\n{text}\n>upper\nACGT\n>lower\nacgtn\n")
    write_token_store([fasta], tmp_path / "mixed.h5")
    with TokenStore(tmp_path / "mixed.h5") as store:
        assert [c.length for c in store.contigs] == [50_000, 4, 5]
        for _ in range(300):
            length = int(rng.integers(0, 5000))
            start = int(rng.integers(0, bases.size - length + 1))
            ids, soft = store.window(0, start, length)
            assert np.array_equal(soft, lower[start : start + length])
            assert tok.decode(ids, soft) == text[start : start + length]
            _, rc_soft = store.window(0, start, length, "-")
            assert np.array_equal(rc_soft, lower[start : start + length][::-1])
        assert store.window(1, 0, 4)[1].tolist() == [False] * 4
        assert store.window(2, 1, 3)[1].tolist() == [True] * 3
        assert store.window(2, 0, 0)[0].shape == (0,)


def test_empty_records_are_refused_as_everywhere(tmp_path: Path) -> None:
    fasta = tmp_path / "gap.fa"
    fasta.write_text(">full\nACGT\n>empty\n\n")
    with pytest.raises(PipelineError, match="record empty has an empty sequence"):
        write_token_store([fasta], tmp_path / "gap.h5")
    assert not (tmp_path / "gap.h5").exists()


def test_lowercase_genome(shared_data: Path, tmp_path: Path, caplog) -> None:
    path = shared_data / "genomes" / "pfalciparum_3d7.fa.gz"
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        write_token_store([path], tmp_path / "pf.h5")
    assert "every one of its 23,264,425 bases is soft-masked" in caplog.text
    expected = fasta_text(path)
    with TokenStore(tmp_path / "pf.h5") as store:
        assert len(store.contigs) == 14 == len(expected)
        assert store.inputs[0].softmasked_bases == store.inputs[0].bases == 23_264_425
        for info, ids, soft in store.iter_contigs():
            assert soft.all()
            assert tok.decode(ids) == expected[info.name].upper()
        assert store.window(3, 1000, 4096, "-")[1].all()


def test_indexed_bgzip_is_written_in_segments(shared_data: Path, tmp_path: Path) -> None:
    # E. coli (4.64 Mbp, one record) is longer than one segment once bgzip-compressed and
    # indexed; the store must equal the one written from the plain gzip, record by record.
    source = shared_data / "genomes" / "ecoli_k12_mg1655.fa.gz"
    plain = tmp_path / "ecoli.fa"
    plain.write_bytes(gzip.decompress(source.read_bytes()))
    pysam.tabix_compress(str(plain), str(tmp_path / "ecoli.fa.gz"))
    pysam.faidx(str(tmp_path / "ecoli.fa.gz"))
    length = len(next(iter(fasta_text(source).values())))
    pieces = read_sequence_pieces(tmp_path / "ecoli.fa.gz")
    assert [(p.offset, len(p.data)) for p in pieces] == [
        (0, SEGMENT_BASES),
        (SEGMENT_BASES, length - SEGMENT_BASES),
    ]
    write_token_store([tmp_path / "ecoli.fa.gz"], tmp_path / "segments.h5")
    write_token_store([source], tmp_path / "records.h5")
    with TokenStore(tmp_path / "segments.h5") as a, TokenStore(tmp_path / "records.h5") as b:
        assert [(c.name, c.length) for c in a.contigs] == [(c.name, c.length) for c in b.contigs]
        assert np.array_equal(a.contig_tokens(0), b.contig_tokens(0))
        assert tok.decode(a.contig_tokens(0)) == next(iter(fasta_text(source).values()))


def test_reads_and_names_with_slashes(shared_data: Path, tmp_path: Path) -> None:
    write_token_store([shared_data / "fixtures" / "range.bam"], tmp_path / "reads.h5")
    with TokenStore(tmp_path / "reads.h5") as store:
        assert len(store.contigs) == 112
        assert all(c.name.endswith(("/1", "/2")) for c in store.contigs)
        assert all(c.length == 100 for c in store.contigs)
    assert dataset_key("a/b%c") == "a%2Fb%25c" and dataset_key(".") == "%2E"


def test_group_names_and_repeated_inputs(shared_data: Path, tmp_path: Path) -> None:
    lam = shared_data / "genomes" / "lambda_phage.fa.gz"
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(lam, other / lam.name)
    write_token_store([lam, other / lam.name], tmp_path / "two.h5")
    with TokenStore(tmp_path / "two.h5") as store:
        assert [i.source for i in store.inputs] == ["lambda_phage", "lambda_phage-2"]
        assert store.inputs[0].sha256 == store.inputs[1].sha256
    with pytest.raises(PipelineError, match="given twice"):
        write_token_store([lam, lam], tmp_path / "twice.h5")
    with pytest.raises(PipelineError, match="overwrite an input"):
        write_token_store([other / lam.name], other / lam.name)
    assert not (tmp_path / "twice.h5").exists()


def test_invalid_policy(tmp_path: Path) -> None:
    fasta = tmp_path / "odd.fa"
    fasta.write_bytes(b">a\nAC*GT\n")
    write_token_store([fasta], tmp_path / "odd.h5", invalid="n")
    with TokenStore(tmp_path / "odd.h5") as store:
        assert tok.decode(store.contig_tokens(0)) == "ACNGT"
    with pytest.raises(ValueError, match="invalid must be"):
        write_token_store([fasta], tmp_path / "x.h5", invalid="drop")


def _window_in_child(store: TokenStore, queue) -> None:
    queue.put(store.window(1, 1000, 50)[0].tolist())


def test_store_in_worker_processes(store: TokenStore) -> None:
    expected = store.window(1, 1000, 50)[0].tolist()
    clone = pickle.loads(pickle.dumps(store))
    assert clone.window(1, 1000, 50)[0].tolist() == expected
    clone.close()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_window_in_child, args=(store, queue))
    child.start()
    assert queue.get(timeout=60) == expected
    child.join(60)
    assert child.exitcode == 0
    assert store.window(1, 1000, 50)[0].tolist() == expected


def test_reader_errors(tmp_path: Path, store_path: Path) -> None:
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    shutil.copy(store_path, newer)
    with h5py.File(newer, "r+") as h5:
        h5.attrs["format_version"] = 99
    retokenize = tmp_path / "retokenize.h5"
    shutil.copy(store_path, retokenize)
    with h5py.File(retokenize, "r+") as h5:
        h5.attrs["tokenizer_version"] = "titans-dna-kmer-6"
    damaged = tmp_path / "damaged.h5"
    shutil.copy(store_path, damaged)
    with h5py.File(damaged, "r+") as h5:
        del h5["lambda_phage"].attrs["contig_lengths"]
    cases = {
        retokenize: "tokenize the inputs again",
        damaged: "damaged token store",
        empty: "empty file",
        text: "not an HDF5 file",
        other: "not a token store",
        newer: "newer than",
        tmp_path / "absent.h5": "no such file",
    }
    for path, problem in cases.items():
        with pytest.raises(PipelineError, match=problem) as info:
            TokenStore(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_contig_info_is_plain_data(store: TokenStore) -> None:
    assert store.contigs[0] == ContigInfo("lambda_phage", "gi|9626243|ref|NC_001416.1|", 48502)
    assert "3 contigs" in repr(store)
