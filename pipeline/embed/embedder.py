"""Sequence embeddings from a Titans LM: pooled (and optionally per-token) hidden states.

Sequences of any length stream through the model's recurrent state in pieces (a multiple of the
model's streaming unit), and pooling accumulates online, so memory depends on the piece length and
batch size, never on the sequence length; the result equals one pass over the whole sequence.
Inputs are read in blocks of bounded size, batched by length inside a block, and written in input
order to the HDF5 layout of `pipeline.embed.store`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.batching import (
    BATCH_TOKENS,
    MAX_BATCH,
    inference_batches,
    pad_batch,
    reverse_complement,
    stream_piece_len,
)
from pipeline.cli_options import FREE_POOLINGS
from pipeline.device import autocast
from pipeline.embed.store import EmbeddingWriter
from pipeline.io.items import SequenceItem, blocks
from pipeline.progress import Progress
from titans_dna.models.lm import TitansLM
from titans_dna.models.pooling import SequencePooling, pool_pieces

log = logging.getLogger("pipeline")
# Per-token output callback: (piece start, hidden [B, t, D] float32, reverse-complement strand).
TokenSink = Callable[[int, np.ndarray, bool], None]


class Embedder:
    """Pooled embeddings [N, d_model] of token-id arrays, streamed in pieces of `piece_len`."""

    def __init__(
        self,
        lm: TitansLM,
        device: torch.device,
        *,
        pooling: str = "mean",
        piece_len: int | None = None,
        rc_average: bool = False,
        batch_tokens: int = BATCH_TOKENS,
        max_batch: int = MAX_BATCH,
    ):
        if pooling not in FREE_POOLINGS:
            raise ValueError(f"pooling must be one of {FREE_POOLINGS}, got {pooling!r}")
        multiple = lm.config.stream_multiple
        if piece_len is not None and (piece_len < 1 or piece_len % multiple):
            raise ValueError(f"piece length {piece_len} is not a multiple of {multiple}")
        self.lm, self.device, self.pooling_kind = lm.eval(), device, pooling
        self.pool = SequencePooling(pooling, lm.config.d_model)
        self.piece_len = piece_len or stream_piece_len(multiple)
        self.rc_average, self.batch_tokens, self.max_batch = rc_average, batch_tokens, max_batch
        self.progress: Progress | None = None  # advanced per streamed piece (forward strand)

    @property
    def dim(self) -> int:
        return self.lm.config.d_model

    def pooled(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled embeddings float32 [N, D] of `sequences` (batched by length internally)."""
        out = np.zeros((len(sequences), self.dim), dtype=np.float32)
        for batch in self.batches(np.array([len(s) for s in sequences], dtype=np.int64)):
            out[batch] = self.embed_batch([sequences[i] for i in batch])
        return out

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        return inference_batches(lengths, self.batch_tokens, self.max_batch, self.piece_len)

    @torch.no_grad()
    def embed_batch(
        self, sequences: list[np.ndarray], token_sink: TokenSink | None = None
    ) -> np.ndarray:
        """Pooled float32 [B, D]; hidden states of every piece go to `token_sink` when given."""
        pooled = self._strand(sequences, token_sink, reverse=False)
        if self.rc_average:
            rc = [reverse_complement(s) for s in sequences]
            pooled = (pooled + self._strand(rc, token_sink, reverse=True)) / 2
        return pooled

    def _strand(
        self, sequences: list[np.ndarray], token_sink: TokenSink | None, reverse: bool
    ) -> np.ndarray:
        longest = max(len(s) for s in sequences)

        def pieces():
            for start in range(0, longest, self.piece_len):
                tokens, mask = pad_batch(sequences, start, min(start + self.piece_len, longest))
                yield start, tokens.to(self.device), mask.to(self.device)

        def on_piece(start: int, hidden: torch.Tensor, mask: torch.Tensor) -> None:
            if self.progress is not None and not reverse:
                self.progress.update(int(mask.sum()))
            if token_sink is not None:
                token_sink(start, hidden.cpu().numpy(), reverse)

        with autocast(self.device):
            pooled = pool_pieces(self.lm, self.pool, pieces(), on_piece)
        return pooled.float().cpu().numpy()


def embed_items(items: Iterator[SequenceItem], writer: EmbeddingWriter, embedder: Embedder) -> int:
    """Embed every item into `writer`, in input order; return the number of items."""
    total = 0
    progress = embedder.progress = Progress(None, "embed", "bp")
    for block in blocks(items):
        lengths = np.array([len(item.tokens) for item in block], dtype=np.int64)
        offsets = writer.reserve_tokens(lengths)
        pooled = np.zeros((len(block), embedder.dim), dtype=np.float32)
        for batch in embedder.batches(lengths):
            sink = writer.token_sink(offsets[batch], lengths[batch]) if writer.per_token else None
            pooled[batch] = embedder.embed_batch([block[i].tokens for i in batch], sink)
        writer.append(block, pooled)
        total += len(block)
    progress.close(sequences=total)
    embedder.progress = None
    return total


def embed_file(
    input_path: str | Path,
    out: str | Path,
    embedder: Embedder,
    *,
    checkpoint: Path | None = None,
    reference: str | Path | None = None,
    genome: str | Path | None = None,
    window: int | None = None,
    stride: int | None = None,
    dtype: str = "float32",
    per_token: bool = False,
    invalid: str = "error",
) -> int:
    """Embed every record (or window) of `input_path` into the HDF5 file `out`, atomically,
    with the provenance attributes (model, `checkpoint` folder and its weights' sha256, options)."""
    from pipeline.atomic import atomic_hdf5, check_output_parent
    from pipeline.io.items import read_items, windows

    check_output_parent(out)
    attrs = provenance(embedder, checkpoint, input_path, window, stride)
    items = read_items(input_path, reference=reference, genome=genome, invalid=invalid)
    if window is not None:
        items = windows(items, window, stride or window)
    with atomic_hdf5(out) as handle:
        writer = EmbeddingWriter(
            handle,
            embedder.dim,
            dtype=dtype,
            per_token=per_token,
            windowed=window is not None,
            attrs=attrs,
        )
        count = embed_items(items, writer, embedder)
        writer.finish()
    log.info("wrote %d embeddings to %s", count, out)
    return count


def provenance(
    embedder: Embedder,
    checkpoint: Path | None,
    input_path: str | Path,
    window: int | None,
    stride: int | None,
) -> dict:
    """The root attributes that say how an embeddings file was made."""
    import datetime

    from pipeline import __version__
    from pipeline.embed.store import model_attrs
    from pipeline.manifest import sha256_file
    from titans_dna.models.checkpoint import WEIGHTS_FILE
    from titans_dna.tokenizer import DNATokenizer

    sha = sha256_file(checkpoint / WEIGHTS_FILE) if checkpoint is not None else ""
    attrs = model_attrs(embedder.lm.config.to_dict(), checkpoint or "", sha, DNATokenizer().version)
    attrs.update(
        pooling=embedder.pooling_kind,
        layer="final",
        package_version=__version__,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        input=str(input_path),
        rc_average=embedder.rc_average,
        piece_len=embedder.piece_len,
        window=window or 0,
        stride=stride or window or 0,
    )
    return attrs
