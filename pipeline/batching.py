"""Batches of variable-length token sequences: length bucketing, right padding, reverse complement.

Sequences are uint8 token-id arrays (titans_dna.tokenizer ids). Padding is on the right with
PAD_ID, which a causal model's real tokens never see.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from titans_dna.tokenizer import PAD_ID, DNATokenizer

# Training batches are drawn from pools of this many batches, sorted by length inside the pool:
# similar lengths share a batch (little padding) while the batch order stays random.
BUCKET_POOL = 50

_TOKENIZER = DNATokenizer()


# Default tokens per streamed piece, rounded up to the model's streaming multiple; tokens and
# sequences per inference batch.
PIECE_TOKENS = 2048
BATCH_TOKENS = 32768
MAX_BATCH = 256


def stream_piece_len(multiple: int, target: int = PIECE_TOKENS) -> int:
    """`target` rounded up to a multiple of the model's streaming unit."""
    return max(multiple, -(-target // multiple) * multiple)


def training_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of example indices in length-bucketed batches of `batch_size`, shuffled."""
    order = rng.permutation(len(lengths))
    batches = []
    pool = batch_size * BUCKET_POOL
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def inference_batches(
    lengths: np.ndarray, max_tokens: int, max_batch: int, piece_len: int
) -> list[np.ndarray]:
    """Indices grouped by length (longest first) for inference.

    A batch holds at most `max_batch` sequences and at most `max_tokens` tokens per streamed
    piece (batch size times min(longest length, piece_len)), so activation memory is bounded
    whatever the sequence lengths.
    """
    order = np.argsort(-lengths, kind="stable")
    batches, current, width = [], [], 0
    for index in order:
        span = max(min(int(lengths[index]), piece_len), 1)
        width = max(width, span) if current else span
        if current and (len(current) >= max_batch or width * (len(current) + 1) > max_tokens):
            batches.append(np.array(current))
            current, width = [], span
        current.append(index)
    if current:
        batches.append(np.array(current))
    return batches


def pad_batch(
    sequences: Sequence[np.ndarray], start: int = 0, stop: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens [B, T] (int64) and mask [B, T] (True = real) of positions start:stop.

    T = stop - start (or the longest remaining length when stop is None).
    """
    if stop is None:
        stop = max(len(s) for s in sequences)
    width = stop - start
    tokens = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=bool)
    for row, seq in enumerate(sequences):
        piece = seq[start:stop]
        tokens[row, : len(piece)] = piece
        mask[row, : len(piece)] = True
    return torch.from_numpy(tokens), torch.from_numpy(mask)


def reverse_complement(sequence: np.ndarray) -> np.ndarray:
    """The reverse complement of one token-id array [L] (N and specials kept)."""
    return _TOKENIZER.reverse_complement(sequence)


def augment_reverse_complement(
    sequences: Sequence[np.ndarray], rng: np.random.Generator, probability: float = 0.5
) -> list[np.ndarray]:
    """Each sequence replaced by its reverse complement with `probability` (augmentation)."""
    flips = rng.random(len(sequences)) < probability
    return [reverse_complement(s) if flip else s for s, flip in zip(sequences, flips, strict=True)]
