"""log2 p of batches of equally long token streams, streamed through the model's state."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.device import autocast
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import A_ID, T_ID


@torch.no_grad()
def stream_log2p(
    lm: TitansLM,
    tokens: np.ndarray,
    *,
    piece_len: int,
    score_from: int = 1,
    reset_every: int | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """log2 p(x_t | x_<t) for t >= score_from of every row of `tokens` [B, T]: [B, T − score_from]
    float64, NaN where x_t is not A/C/G/T.

    The rows stream in pieces of `piece_len` tokens (a multiple of the model's streaming unit);
    with `reset_every`, the memory goes back to its learned initial state every that many tokens
    (attention caches kept): the model then sees at most that much context through its memory.
    """
    device = device or next(lm.parameters()).device
    if reset_every is not None:
        piece_len = math.gcd(piece_len, reset_every)
    if piece_len % lm.config.stream_multiple:
        raise ValueError(
            f"piece length {piece_len} is not a multiple of the model's streaming unit"
        )
    ids = torch.from_numpy(np.asarray(tokens, np.int64))
    scores = np.full((ids.shape[0], ids.shape[1] - score_from), np.nan)
    state, last = None, None
    for start in range(0, ids.shape[1], piece_len):
        if state is not None and reset_every is not None and start % reset_every == 0:
            state = lm.reset_memory(state)
        piece = ids[:, start : start + piece_len]
        with autocast(device):
            logits, _, state = lm(piece.to(device), state)
        logp = F.log_softmax(logits.float(), -1)
        predictions = logp[:, :-1] if last is None else torch.cat([last, logp[:, :-1]], 1)
        first = start + 1 if last is None else start  # position the first prediction scores
        last = logp[:, -1:]
        targets = piece[:, 1:] if first > start else piece
        lo = max(first, score_from)
        if lo >= start + piece.shape[1]:
            continue
        keep = slice(lo - first, None)
        picked = predictions[:, keep].gather(-1, targets[:, keep, None].to(device))[..., 0]
        picked = (picked / math.log(2)).double().cpu().numpy()
        acgt = ((targets[:, keep] >= A_ID) & (targets[:, keep] <= T_ID)).numpy()
        scores[:, lo - score_from : lo - score_from + picked.shape[1]] = np.where(
            acgt, picked, np.nan
        )
    return scores
