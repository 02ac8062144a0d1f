"""The embeddings HDF5 layout (schema version 1), written incrementally and read back.

```
/ids               [N] vlen utf-8        record id, or `contig:start-end` for a window
/embeddings        [N, D] float32|float16 pooled per sequence
/lengths           [N] int64             tokens per sequence
/token_embeddings  [sum L_i, D]          with --per-token: row offsets[i] + j is token j of i
/offsets           [N + 1] int64         with --per-token
/windows           [N] compound (contig vlen utf-8, start int64, end int64, strand vlen utf-8)
                   with --window: 0-based half-open coordinates inside the input record
root attributes    schema_version, model_config (JSON), checkpoint, checkpoint_sha256, tokenizer,
                   pooling, layer, dtype, package_version, created, and the run's options
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import input_error
from pipeline.inputs import SequenceItem

SCHEMA_VERSION = 1
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
        for key, value in {**attrs, "schema_version": SCHEMA_VERSION, "dtype": dtype}.items():
            handle.attrs[key] = value
        handle.create_dataset("ids", (0,), _TEXT, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,))
        handle.create_dataset(
            "embeddings",
            (0, dim),
            self.dtype,
            maxshape=(None, dim),
            chunks=(_ROWS_PER_CHUNK, dim),
        )
        handle.create_dataset(
            "lengths", (0,), np.int64, maxshape=(None,), chunks=(_ROWS_PER_CHUNK,)
        )
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
        for name in ("ids", "embeddings", "lengths") + (("windows",) if self.windowed else ()):
            self.handle[name].resize(end, axis=0)
        self.handle["ids"][self.count : end] = [item.id for item in items]
        self.handle["embeddings"][self.count : end] = pooled.astype(self.dtype)
        lengths = np.array([len(item.tokens) for item in items], dtype=np.int64)
        self.handle["lengths"][self.count : end] = lengths
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


@dataclass
class Embeddings:
    """Pooled embeddings read back from a file: ids [N], vectors float32 [N, D], lengths [N]."""

    path: Path
    ids: list[str]
    vectors: np.ndarray
    lengths: np.ndarray
    attrs: dict
    windowed: bool


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
