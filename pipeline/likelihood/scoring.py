"""Per-base log-likelihoods streamed through the recurrent state.

Each target's tokens go through the model in pieces of `piece_len` (a multiple of the model's
streaming unit), the state carried from piece to piece, so memory depends on the piece length,
never on the target's length, and the scores equal one pass over the whole target. Base i gets
log2 p(x_i | x_0 .. x_{i-1}); the first base of a target (no left context) and N get NaN.
Targets shorter than a piece are scored together in padded batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.batching import pad_batch
from pipeline.device import autocast
from pipeline.likelihood.sources import Target
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import A_ID, T_ID

_LOG2E = 1 / math.log(2)


class LikelihoodScorer:
    """log2 p of every base of targets, streamed (long targets) or batched (short ones)."""

    def __init__(
        self, lm: TitansLM, device: torch.device, piece_len: int, batch_tokens: int = 32768
    ) -> None:
        multiple = lm.config.stream_multiple
        if piece_len < 1 or piece_len % multiple:
            raise ValueError(f"piece length {piece_len} is not a multiple of {multiple}")
        self.lm, self.device = lm.eval(), device
        self.piece_len, self.batch_tokens = piece_len, batch_tokens

    def _forward(self, tokens: torch.Tensor, state=None):
        with autocast(self.device):
            logits, _, state = self.lm(tokens.to(self.device), state)
        return F.log_softmax(logits.float(), dim=-1), state

    @torch.no_grad()
    def stream(self, segments: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """log2 p [n] float32 of consecutive stretches of one target's tokens, in order; their
        concatenation covers every token (NaN for the first and for N)."""
        state, previous, pending = None, None, np.zeros(0, np.uint8)
        first = True
        for segment in segments:
            pending = np.concatenate([pending, segment])
            while len(pending) >= self.piece_len:
                piece, pending = pending[: self.piece_len], pending[self.piece_len :]
                scores, state, previous = self._piece(piece, state, previous, first)
                first = False
                yield scores
        if len(pending):
            yield self._piece(pending, state, previous, first)[0]

    def _piece(self, piece: np.ndarray, state, previous: torch.Tensor | None, first: bool):
        tokens = torch.from_numpy(piece.astype(np.int64))[None]
        logp, state = self._forward(tokens, state)
        # position j predicts token j + 1; the previous piece's last position predicts token 0
        lead = logp.new_full((1, 1, logp.shape[-1]), math.nan) if first else previous
        predictions = torch.cat([lead, logp[:, :-1]], dim=1)
        return _gather(predictions, tokens)[0], state, logp[:, -1:]

    @torch.no_grad()
    def batch(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        """log2 p [L_i] of short sequences (each at most a piece), in one padded pass."""
        tokens, _ = pad_batch(sequences)
        logp, _ = self._forward(tokens)
        lead = logp.new_full((len(sequences), 1, logp.shape[-1]), math.nan)
        scores = _gather(torch.cat([lead, logp[:, :-1]], dim=1), tokens)
        return [scores[i, : len(s)] for i, s in enumerate(sequences)]

    def score(self, targets: Iterator[Target]) -> Iterator[tuple[Target, Iterator[np.ndarray]]]:
        """Each target with the log2 p of its scored bases (left context dropped), in stretches.

        Consume a target's stretches before asking for the next target.
        """
        short: list[tuple[Target, np.ndarray]] = []
        for target in targets:
            segments = iter(target.segments)
            head = next(segments, np.zeros(0, np.uint8))
            if target.context + target.length <= self.piece_len:  # one segment holds it all
                short.append((target, head))
                if sum(len(t) for _, t in short) >= self.batch_tokens:
                    yield from self._flush(short)
                continue
            yield from self._flush(short)
            yield target, _drop(self.stream(_chain(head, segments)), target.context)
        yield from self._flush(short)

    def _flush(self, short: list[tuple[Target, np.ndarray]]):
        if not short:
            return
        scores = self.batch([tokens for _, tokens in short])
        done = [(t, iter([s[t.context :]])) for (t, _), s in zip(short, scores, strict=True)]
        short.clear()
        yield from done


def _gather(logp: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
    """log2 p [B, T] float32 of `tokens` under `logp` [B, T, V]; NaN where the token is not ACGT."""
    picked = logp.gather(-1, tokens.to(logp.device)[..., None])[..., 0] * _LOG2E
    acgt = (tokens >= A_ID) & (tokens <= T_ID)
    return torch.where(acgt.to(picked.device), picked, math.nan).cpu().numpy().astype(np.float32)


def _chain(head: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield head
    yield from rest


def _drop(stretches: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """The stretches without their first `count` values."""
    for stretch in stretches:
        if count >= len(stretch):
            count -= len(stretch)
            continue
        yield stretch[count:]
        count = 0
