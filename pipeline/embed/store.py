"""The embeddings HDF5 layout (schema version 1), written incrementally and read back.

```
/ids               [N] vlen utf-8        record id, or `contig:start-end` for a window (1-based,
                                         inclusive, as samtools and IGV read regions)
/embeddings        [N, D] float32|float16 pooled per sequence
/lengths           [N] int64             tokens per sequence
/sequence_digests  [N] uint64            the first 8 bytes of the blake2b digest of each sequence's
                                         token ids: which sequence a row embeds (`sequence_digest`)
/gc_content        [N] float32           G+C among the A/C/G/T bases of each sequence (NaN: none)
/token_embeddings  [sum L_i, D]          with --per-token: row offsets[i] + j is token j of i
/offsets           [N + 1] int64         with --per-token
/windows           [N] compound (contig vlen utf-8, start int64, end int64, strand vlen utf-8)
                   with --window: 0-based half-open coordinates inside the input record
root attributes    schema_version, model_config (JSON), checkpoint, checkpoint_sha256, tokenizer,
                   pooling, layer, dtype, package_version, created, the run's options, and
                   with windows window_ids (how window ids give coordinates)
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import input_error
from pipeline.io.items import SequenceItem
from pipeline.io.tasks import LabelledSplit
from titans_dna.tokenizer import A_ID, C_ID, G_ID, T_ID

SCHEMA_VERSION = 1
WINDOW_IDS = "contig:start-end, 1-based inclusive (samtools, IGV); /windows: 0-based half-open"
DIGESTS = "sequence_digests"
GC_CONTENT = "gc_content"
DTYPES = ("float32", "float16")
_TEXT = h5py.string_dtype("utf-8")
_WINDOW = np.dtype([("contig", _TEXT), ("start", np.int64), ("end", np.int64), ("strand", _TEXT)])
_ROWS_PER_CHUNK = 1024
_TOKENS_PER_CHUNK = 8192


class EmbeddingWriter:
    """Appends blocks of pooled embeddings (and per-token rows) to an open, empty HDF5 file."""

    def __init__(
        self,
        handle: h5py.File,
        dim: int,
        *,
        dtype: str,
        per_token: bool,
        windowed: bool,
        attrs: dict,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.handle, self.dim, self.dtype = handle, dim, np.dtype(dtype)
        self.per_token, self.windowed = per_token, windowed
        self.count, self.token_count = 0, 0
        layout = {"schema_version": SCHEMA_VERSION, "dtype": dtype}
        if windowed:
            layout["window_ids"] = WINDOW_IDS
        for key, value in {**attrs, **layout}.items():
            handle.attrs[key] = value
        handle.create_dataset("ids", (0,), _TEXT, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,))
        handle.create_dataset(
            "embeddings",
            (0, dim),
            self.dtype,
            maxshape=(None, dim),
            chunks=(_ROWS_PER_CHUNK, dim),
        )
        for name, kind in (("lengths", np.int64), (DIGESTS, np.uint64), (GC_CONTENT, np.float32)):
            handle.create_dataset(name, (0,), kind, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,))
        if windowed:
            handle.create_dataset(
                "windows", (0,), _WINDOW, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,)
            )
        if per_token:
            handle.create_dataset(
                "token_embeddings",
                (0, dim),
                self.dtype,
                maxshape=(None, dim),
                chunks=(_TOKENS_PER_CHUNK, dim),
            )
            offsets = handle.create_dataset(
                "offsets", (1,), np.int64, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,)
            )
            offsets[0] = 0

    def reserve_tokens(self, lengths: np.ndarray) -> np.ndarray:
        """Grow /token_embeddings for a block; return each item's first row [n] (0 if unused)."""
        starts = np.zeros(len(lengths), dtype=np.int64)
        if not self.per_token:
            return starts
        starts[1:] = np.cumsum(lengths)[:-1]
        starts += self.token_count
        self.token_count += int(lengths.sum())
        self.handle["token_embeddings"].resize(self.token_count, axis=0)
        return starts

    def token_sink(self, starts: np.ndarray, lengths: np.ndarray):
        """A callback writing one batch's per-piece hidden states at rows `starts` [B].

        Reverse-strand pieces are flipped back to forward positions and averaged with the
        forward rows already written, so each row averages the two strands' views of a base.
        """
        dataset = self.handle["token_embeddings"]

        def sink(piece_start: int, hidden: np.ndarray, reverse: bool) -> None:
            for row, (first, length) in enumerate(zip(starts, lengths, strict=True)):
                n = int(min(max(length - piece_start, 0), hidden.shape[1]))
                if n == 0:
                    continue
                if not reverse:
                    dataset[first + piece_start : first + piece_start + n] = hidden[row, :n]
                    continue
                lo, hi = first + length - piece_start - n, first + length - piece_start
                forward = dataset[lo:hi].astype(np.float32)
                dataset[lo:hi] = (forward + hidden[row, :n][::-1]) / 2

        return sink

    def append(self, items: list[SequenceItem], pooled: np.ndarray) -> None:
        """Append a block: items in input order and their pooled vectors [n, D]."""
        if len(items) != len(pooled):
            raise ValueError(f"{len(items)} items but {len(pooled)} pooled vectors")
        end = self.count + len(items)
        for name in ("ids", "embeddings", "lengths", DIGESTS, GC_CONTENT) + (
            ("windows",) if self.windowed else ()
        ):
            self.handle[name].resize(end, axis=0)
        self.handle["ids"][self.count : end] = [item.id for item in items]
        self.handle["embeddings"][self.count : end] = pooled.astype(self.dtype)
        lengths = np.array([len(item.tokens) for item in items], dtype=np.int64)
        self.handle["lengths"][self.count : end] = lengths
        self.handle[DIGESTS][self.count : end] = [sequence_digest(item.tokens) for item in items]
        self.handle[GC_CONTENT][self.count : end] = [gc_content(item.tokens) for item in items]
        if self.windowed:
            rows = np.array(
                [(item.contig, item.start, item.end, item.strand) for item in items], dtype=_WINDOW
            )
            self.handle["windows"][self.count : end] = rows
        if self.per_token:
            offsets = self.handle["offsets"]
            offsets.resize(end + 1, axis=0)
            offsets[self.count + 1 : end + 1] = offsets[self.count] + np.cumsum(lengths)
        self.count = end

    def finish(self) -> None:
        """Record the totals in the root attributes."""
        self.handle.attrs["num_sequences"] = self.count
        self.handle.attrs["num_tokens"] = int(self.handle["lengths"][:].sum())


def sequence_digest(tokens: np.ndarray) -> int:
    """A 64-bit digest of a sequence's token ids (blake2b), identifying what was embedded."""
    data = np.ascontiguousarray(tokens, dtype=np.uint8).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def gc_content(tokens: np.ndarray) -> float:
    """G+C over A+C+G+T of a token id sequence (N and other tokens left out); NaN without any."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=T_ID + 1)
    bases = counts[[A_ID, C_ID, G_ID, T_ID]].sum()
    return float(counts[C_ID] + counts[G_ID]) / bases if bases else float("nan")


@dataclass
class Embeddings:
    """Pooled embeddings read back from a file: ids [N], vectors float32 [N, D], lengths [N],
    sequence digests [N] (None in files written before they were recorded)."""

    path: Path
    ids: list[str]
    vectors: np.ndarray
    lengths: np.ndarray
    attrs: dict
    windowed: bool
    digests: np.ndarray | None = None


def read_embeddings(path: str | Path) -> Embeddings:
    """Read the pooled part of an embeddings file; PipelineError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "embeddings file not found")
    try:
        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("schema_version")
            if version != SCHEMA_VERSION or "embeddings" not in handle:
                raise input_error(path, "not a titans-dna embeddings file (schema version 1)")
            ids = [x.decode() if isinstance(x, bytes) else x for x in handle["ids"][:]]
            return Embeddings(
                path,
                ids,
                handle["embeddings"][:].astype(np.float32),
                handle["lengths"][:],
                {k: _attr(v) for k, v in handle.attrs.items()},
                "windows" in handle,
                handle[DIGESTS][:] if DIGESTS in handle else None,
            )
    except OSError as err:
        raise input_error(path, f"unreadable HDF5 file ({err})") from None


def model_attrs(config: dict, checkpoint: Path, sha256: str, tokenizer: str) -> dict:
    """The model-describing root attributes."""
    return {
        "model_config": json.dumps(config, sort_keys=True),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256,
        "tokenizer": tokenizer,
    }


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def match_embeddings(embeddings: Embeddings, split: LabelledSplit) -> np.ndarray:
    """The rows of `embeddings` [N, D] for the examples of `split`, matched by id, each row
    checked to embed that example's sequence (its digest; its length in files without)."""
    if embeddings.windowed:
        raise input_error(embeddings.path, "windowed embeddings cannot be matched to task examples")
    row = {}
    for i, name in enumerate(embeddings.ids):
        if name in row:
            raise input_error(embeddings.path, f"id '{name}' occurs twice")
        row[name] = i
    missing = [name for name in split.ids if name not in row]
    if missing:
        raise input_error(
            embeddings.path,
            f"no embedding for {len(missing)} example(s) of {split.source}, e.g. '{missing[0]}'",
        )
    rows = [row[name] for name in split.ids]
    if embeddings.digests is not None:
        found = embeddings.digests[rows]
        want = np.array([sequence_digest(s) for s in split.sequences], dtype=np.uint64)
    else:
        found = embeddings.lengths[rows]
        want = np.array([len(s) for s in split.sequences])
    wrong = np.flatnonzero(found != want)
    if wrong.size:
        raise input_error(
            embeddings.path,
            f"{wrong.size} of {len(rows)} embeddings were made from other sequences than the "
            f"examples of {split.source} with the same ids (e.g. '{split.ids[wrong[0]]}'); "
            "embed that file",
        )
    return embeddings.vectors[rows]
