"""DNATokenizer: vocabulary, encoding rules, errors, decode, reverse complement, batches, files."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from titans_dna.tokenizer import (
    A_ID,
    C_ID,
    G_ID,
    N_ID,
    PAD_ID,
    T_ID,
    VOCAB_SIZE,
    DNATokenizer,
    InvalidSequenceError,
)

tok = DNATokenizer()
IUPAC = "RYSWKMBDHV"


def reference_encode(seq: bytes) -> tuple[list[int], list[bool]]:
    """The rules written out per base, independent of the lookup table."""
    ids, soft = [], []
    for byte in seq:
        char = chr(byte)
        upper = char.upper()
        if upper in "ACGT":
            ids.append({"A": A_ID, "C": C_ID, "G": G_ID, "T": T_ID}[upper])
        elif upper == "N" or upper in IUPAC:
            ids.append(N_ID)
        else:
            raise AssertionError(f"not a nucleotide byte {byte}")
        soft.append(char.islower())
    return ids, soft


def test_vocabulary_layout() -> None:
    assert tok.vocab_size == VOCAB_SIZE == 10
    assert tok.vocab == {
        "[PAD]": 0,
        "[CLS]": 1,
        "[SEP]": 2,
        "[MASK]": 3,
        "[UNK]": 4,
        "A": 5,
        "C": 6,
        "G": 7,
        "T": 8,
        "N": 9,
    }


def test_every_valid_byte_matches_the_rules() -> None:
    letters = "ACGTN" + IUPAC
    seq = (letters + letters.lower()).encode()
    ids, soft = tok.encode(seq)
    expected_ids, expected_soft = reference_encode(seq)
    assert ids.dtype == np.uint8 and soft.dtype == np.bool_
    assert ids.tolist() == expected_ids
    assert soft.tolist() == expected_soft


@pytest.mark.parametrize("byte", [b for b in range(256) if chr(b).upper() not in "ACGTN" + IUPAC])
def test_every_other_byte_is_invalid(byte: int) -> None:
    with pytest.raises(InvalidSequenceError) as info:
        tok.encode(b"AC" + bytes([byte]) + b"GT", source="x.fa", record="r1")
    assert info.value.offset == 2 and info.value.byte == byte


def test_error_names_source_record_and_offset() -> None:
    with pytest.raises(InvalidSequenceError) as info:
        tok.encode(b"ACGTACG7T", source="genome.fa", record="chr1", start=1000)
    message = str(info.value)
    assert "genome.fa" in message and "'chr1'" in message
    assert "'7'" in message and "offset 1007" in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("seq", "shown"),
    [
        (b"AC*G", "'*'"),
        (b"AC-G", "'-'"),
        (b"AC>G", "'>'"),
        (b"AC G", "space"),
        (b"AC\xffG", "0xff"),
    ],
)
def test_error_describes_the_byte(seq: bytes, shown: str) -> None:
    with pytest.raises(InvalidSequenceError, match=shown):
        tok.encode(seq)


def test_policy_n_maps_invalid_bytes_to_unmasked_n() -> None:
    ids, soft = tok.encode(b"ac*g1T", invalid="n")
    assert ids.tolist() == [A_ID, C_ID, N_ID, G_ID, N_ID, T_ID]
    assert soft.tolist() == [True, True, False, True, False, False]


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid must be"):
        tok.encode(b"ACGT", invalid="skip")


def test_str_input_equals_bytes_and_counts_utf8_bytes() -> None:
    assert np.array_equal(tok.encode("ACgtn")[0], tok.encode(b"ACgtn")[0])
    with pytest.raises(InvalidSequenceError) as info:
        tok.encode("Aé*")
    assert info.value.offset == 1 and info.value.byte == 0xC3


def test_empty_sequence_and_writable_results() -> None:
    ids, soft = tok.encode(b"")
    assert ids.shape == soft.shape == (0,)
    ids, soft = tok.encode(bytearray(b"ACGT"))
    ids[0] = PAD_ID  # callers may mask tokens in place
    soft[0] = True
    assert ids.flags.writeable and soft.flags.writeable


def test_encoding_is_vectorised() -> None:
    rng = np.random.default_rng(0)
    seq = rng.choice(list(b"ACGTacgtN"), size=2_000_000).astype(np.uint8).tobytes()
    table = {byte: i for i, byte in enumerate(b"ACGTN", start=A_ID)}
    sample = seq[:400_000]

    def best_of(step) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times)

    lookup_table = best_of(lambda: tok.encode(seq))
    # Any per-base Python loop over all 2 Mbp costs more than this loop over a fifth of them.
    per_base_loop = best_of(lambda: [table.get(b, N_ID) for b in sample])
    assert lookup_table < per_base_loop


def test_decode_round_trip_with_softmask() -> None:
    text = "ACGTNacgtnNNAC"
    ids, soft = tok.encode(text)
    assert tok.decode(ids) == text.upper()
    assert tok.decode(ids, soft) == text
    assert tok.decode(torch.from_numpy(ids), torch.from_numpy(soft)) == text
    assert tok.decode([A_ID, C_ID]) == "AC"


def test_decode_specials() -> None:
    ids = np.array([1, A_ID, C_ID, 2, 0, 0])
    assert tok.decode(ids) == "[CLS]AC[SEP][PAD][PAD]"
    assert tok.decode(ids, np.array([0, 1, 0, 0, 0, 0], bool)) == "[CLS]aC[SEP][PAD][PAD]"
    assert tok.decode(ids, skip_special_tokens=True) == "AC"


@pytest.mark.parametrize("bad", [[10], [-1], [[5, 6]]])
def test_decode_rejects_bad_ids(bad: list) -> None:
    with pytest.raises(ValueError):
        tok.decode(np.array(bad))


def test_reverse_complement_numpy() -> None:
    ids, _ = tok.encode(b"AACGTN")
    rc = tok.reverse_complement(ids)
    assert tok.decode(rc) == "NACGTT"
    assert rc.dtype == ids.dtype and rc.flags.c_contiguous
    wide = tok.reverse_complement(ids.astype(np.int64))
    assert wide.dtype == np.int64 and wide.tolist() == rc.tolist()
    batch = np.stack([ids, tok.encode(b"GGGCCN")[0]])
    rc_batch = tok.reverse_complement(batch)
    assert tok.decode(rc_batch[1]) == "NGGCCC"
    assert np.array_equal(tok.reverse_complement(rc_batch), batch)


def test_reverse_complement_keeps_specials_and_torch_type() -> None:
    ids = torch.tensor([[1, A_ID, G_ID, N_ID, 2, 0]], dtype=torch.long)
    rc = tok.reverse_complement(ids)
    assert isinstance(rc, torch.Tensor) and rc.dtype == torch.long
    assert rc.tolist() == [[0, 2, N_ID, C_ID, T_ID, 1]]
    as_uint8 = tok.reverse_complement(ids.to(torch.uint8))
    assert as_uint8.dtype == torch.uint8 and as_uint8.tolist() == rc.tolist()


def test_batch_encode_pads_right() -> None:
    tokens, mask = tok.batch_encode([b"ACGT", "ac", b""])
    assert tokens.dtype == torch.long and mask.dtype == torch.bool
    assert tokens.tolist() == [[5, 6, 7, 8], [5, 6, 0, 0], [0, 0, 0, 0]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False], [False] * 4]
    tokens, mask = tok.batch_encode(["ACG"], pad_to=6)
    assert tokens.shape == mask.shape == (1, 6) and int(mask.sum()) == 3


def test_batch_encode_errors() -> None:
    with pytest.raises(ValueError, match="pad_to"):
        tok.batch_encode(["ACGTA"], pad_to=4)
    with pytest.raises(InvalidSequenceError, match="#1"):
        tok.batch_encode(["ACGT", "AC*"])
    assert tok.batch_encode(["AC*"], invalid="n")[0].tolist() == [[A_ID, C_ID, N_ID]]


def test_save_and_load(tmp_path) -> None:
    tok.save(tmp_path / "tokenizer.json")
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    assert data["version"] == tok.version and data["vocab"]["N"] == N_ID
    assert DNATokenizer.load(tmp_path / "tokenizer.json").vocab == tok.vocab
    assert DNATokenizer.load(tmp_path).version == tok.version  # a folder holding tokenizer.json


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"tokenizer_class": "BPETokenizer"}),
        json.dumps({**DNATokenizer().to_dict(), "version": "titans-dna-nucleotide-0"}),
        json.dumps({**DNATokenizer().to_dict(), "vocab": {"A": 0}}),
    ],
)
def test_load_rejects_other_tokenizers(tmp_path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        DNATokenizer.load(path)


def test_library_does_not_import_pipeline_dependencies() -> None:
    code = (
        "import sys, titans_dna.tokenizer; "
        "bad = [m for m in ('pipeline', 'pysam', 'h5py', 'snakemake') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
