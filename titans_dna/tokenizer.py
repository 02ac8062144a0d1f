"""Single-nucleotide DNA tokenizer.

Vocabulary: the specials `[PAD] [CLS] [SEP] [MASK] [UNK]` (ids 0-4), then `A C G T N` (ids 5-9).
IUPAC ambiguity codes (R Y S W K M B D H V) read as N. Lowercase letters (soft-masked repeats)
read as their uppercase token, and a soft-mask flag is returned beside the ids. Any other byte
is an error naming the source, the record and the byte offset, unless `invalid="n"` turns it
into N. Encoding runs through a 256-entry byte lookup table in C (`bytes.translate`), never a
Python loop per base.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = 0, 1, 2, 3, 4
A_ID, C_ID, G_ID, T_ID, N_ID = 5, 6, 7, 8, 9
VOCAB_SIZE = 10
TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "A", "C", "G", "T", "N")
SPECIAL_IDS = (PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID)
AMBIGUITY_CODES = "RYSWKMBDHV"
TOKENIZER_VERSION = "titans-dna-nucleotide-1"
INVALID_POLICIES = ("error", "n")

_INVALID = 255  # table entry for bytes that are not nucleotide letters


def _id_table() -> bytes:
    table = bytearray([_INVALID]) * 256
    letters = {"A": A_ID, "C": C_ID, "G": G_ID, "T": T_ID, "N": N_ID}
    letters.update(dict.fromkeys(AMBIGUITY_CODES, N_ID))
    for letter, token in letters.items():
        table[ord(letter)] = table[ord(letter.lower())] = token
    return bytes(table)


_ID_TABLE = _id_table()
# Decoding: ids 5-9 to letters, upper and lower case; other entries are never used.
_UPPER_TABLE = bytes(b"?????ACGTN".ljust(256, b"?"))
_LOWER_TABLE = bytes(b"?????acgtn".ljust(256, b"?"))
_SPECIAL_NAMES = np.array(TOKENS, dtype=object)
_COMPLEMENT_UINT8 = np.arange(256, dtype=np.uint8)
_COMPLEMENT_UINT8[[A_ID, C_ID, G_ID, T_ID]] = [T_ID, G_ID, C_ID, A_ID]


class InvalidSequenceError(ValueError):
    """A byte that is neither a nucleotide letter nor an IUPAC ambiguity code."""

    def __init__(self, source: str, record: str, offset: int, byte: int):
        self.source, self.record, self.offset, self.byte = source, record, offset, byte
        where = f"{source}: record {record!r}" if record else source
        super().__init__(
            f"{where}: invalid byte {_describe_byte(byte)} at sequence offset {offset} (0-based)"
        )


def _describe_byte(byte: int) -> str:
    char = chr(byte)
    if byte < 128 and char.isprintable() and char != " ":
        return repr(char)
    names = {32: "' ' (space)", 9: "'\\t' (tab)", 10: "'\\n'", 13: "'\\r'"}
    return names.get(byte, f"0x{byte:02x}")


def _as_bytes(seq: bytes | bytearray | memoryview | str) -> bytes | bytearray:
    if isinstance(seq, str):
        # surrogateescape gives back the original bytes of text decoded the same way.
        return seq.encode("utf-8", "surrogateescape")
    if isinstance(seq, bytes | bytearray):
        return seq
    if isinstance(seq, memoryview):
        return seq.tobytes()
    raise TypeError(f"expected bytes or str, got {type(seq).__name__}")


class DNATokenizer:
    """Single-nucleotide tokenizer with soft-mask flags; see the module docstring."""

    vocab_size: int = VOCAB_SIZE
    version: str = TOKENIZER_VERSION

    @property
    def vocab(self) -> dict[str, int]:
        """Token string to id."""
        return {token: i for i, token in enumerate(TOKENS)}

    def encode(
        self,
        seq: bytes | bytearray | memoryview | str,
        *,
        source: str = "<string>",
        record: str = "",
        invalid: str = "error",
        start: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode a sequence of length L.

        Returns (ids uint8 [L], softmask bool [L]). `source`, `record` and `start` (the offset of
        `seq[0]` within its record) only serve the error message; `invalid="n"` maps bytes that
        are not nucleotide letters to N (soft-mask False) instead of raising
        `InvalidSequenceError`.
        """
        if invalid not in INVALID_POLICIES:
            raise ValueError(f"invalid must be one of {INVALID_POLICIES}, got {invalid!r}")
        raw = _as_bytes(seq)
        # translate() runs the lookup table in C; copy() because bytes-backed arrays are read-only.
        ids = np.frombuffer(raw.translate(_ID_TABLE), dtype=np.uint8).copy()
        # Valid lowercase letters are exactly the valid bytes >= ord("a").
        softmask = np.frombuffer(raw, dtype=np.uint8) >= ord("a")
        if ids.size and ids.max() == _INVALID:
            bad = np.flatnonzero(ids == _INVALID)
            if invalid == "error":
                first = int(bad[0])
                raise InvalidSequenceError(source, record, start + first, raw[first])
            ids[bad] = N_ID
            softmask[bad] = False
        return ids, softmask

    def decode(
        self,
        ids: np.ndarray | torch.Tensor | Sequence[int],
        softmask: np.ndarray | torch.Tensor | None = None,
        *,
        skip_special_tokens: bool = False,
    ) -> str:
        """Ids [L] back to text; soft-masked positions (bool [L]) in lowercase.

        Special tokens are written as their names (`[PAD]`, ...) unless skipped.
        """
        arr = _as_int_array(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode takes one sequence (1-D ids), got shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
            low, high = arr.min(), arr.max()
            raise ValueError(f"token ids must lie in [0, {VOCAB_SIZE}), got {low}..{high}")
        lower = None if softmask is None else _as_int_array(softmask).astype(bool)
        if lower is not None and lower.shape != arr.shape:
            raise ValueError(f"softmask shape {lower.shape} differs from ids shape {arr.shape}")
        special = arr < A_ID
        if special.any():
            if skip_special_tokens:
                keep = ~special
                arr, special = arr[keep], special[keep]
                lower = None if lower is None else lower[keep]
            else:
                return self._decode_with_specials(arr, special, lower)
        return _letters(arr, lower)

    def _decode_with_specials(
        self, arr: np.ndarray, special: np.ndarray, lower: np.ndarray | None
    ) -> str:
        pieces = _SPECIAL_NAMES[arr]
        letters = ~special
        if lower is not None:
            pieces[letters & lower] = [p.lower() for p in pieces[letters & lower]]
        return "".join(pieces)

    def reverse_complement(self, ids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Reverse complement along the last axis: A<->T, C<->G; N and specials stay.

        Works on numpy arrays and torch tensors of any shape [..., L], on any device, and
        returns the same type and dtype (numpy results are C-contiguous).
        """
        # A + T = C + G = 13, so the complement of a base id b is 13 - b.
        if isinstance(ids, torch.Tensor):
            is_base = (ids >= A_ID) & (ids <= T_ID)
            return torch.where(is_base, A_ID + T_ID - ids, ids).flip(-1)
        arr = np.asarray(ids)
        if arr.dtype == np.uint8:  # the common case (token stores): one table lookup
            return np.take(_COMPLEMENT_UINT8, arr[..., ::-1])
        is_base = (arr >= A_ID) & (arr <= T_ID)
        flipped = np.where(is_base, A_ID + T_ID - arr, arr).astype(arr.dtype, copy=False)
        return np.ascontiguousarray(flipped[..., ::-1])

    def batch_encode(
        self,
        seqs: Sequence[bytes | str],
        *,
        pad_to: int | None = None,
        invalid: str = "error",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode B sequences, right-padded with PAD_ID to L = pad_to or the longest length.

        Returns (tokens LongTensor [B, L], attention mask BoolTensor [B, L], True on real tokens).
        A sequence longer than `pad_to` is an error (truncating silently would lose bases).
        """
        encoded = [
            self.encode(s, source="<batch>", record=f"#{i}", invalid=invalid)[0]
            for i, s in enumerate(seqs)
        ]
        longest = max((len(ids) for ids in encoded), default=0)
        length = longest if pad_to is None else pad_to
        if longest > length:
            raise ValueError(f"a sequence of length {longest} does not fit pad_to={pad_to}")
        tokens = torch.full((len(encoded), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.bool)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.from_numpy(ids)
            mask[row, : len(ids)] = True
        return tokens, mask

    def to_dict(self) -> dict[str, object]:
        """The tokenizer.json content."""
        return {
            "tokenizer_class": type(self).__name__,
            "version": self.version,
            "vocab": self.vocab,
            "ambiguity_codes_to_n": AMBIGUITY_CODES,
            "softmask": "lowercase",
        }

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json (a file path, or a folder to hold tokenizer.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DNATokenizer:
        """Read tokenizer.json (or a folder holding it).

        Raises ValueError when the file describes another tokenizer or version.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read tokenizer: {error}") from error
        tokenizer = cls()
        if not isinstance(data, dict) or data.get("tokenizer_class") != cls.__name__:
            raise ValueError(f"{path}: not a {cls.__name__} tokenizer.json")
        if data.get("version") != tokenizer.version or data.get("vocab") != tokenizer.vocab:
            raise ValueError(
                f"{path}: tokenizer version {data.get('version')!r} with its vocabulary is not "
                f"this library's {tokenizer.version!r}"
            )
        return tokenizer

    def __repr__(self) -> str:
        return f"DNATokenizer(version={self.version!r}, vocab_size={self.vocab_size})"


def _as_int_array(values: np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _letters(arr: np.ndarray, lower: np.ndarray | None) -> str:
    codes = arr.astype(np.uint8)
    text = codes.tobytes().translate(_UPPER_TABLE)
    if lower is not None and lower.any():
        lowered = np.frombuffer(codes.tobytes().translate(_LOWER_TABLE), dtype=np.uint8)
        merged = np.where(lower, lowered, np.frombuffer(text, dtype=np.uint8))
        text = merged.astype(np.uint8).tobytes()
    return text.decode("ascii")
