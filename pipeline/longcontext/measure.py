"""All long-context measurements of one model on one genome, as one JSON-ready summary."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import input_error
from pipeline.io.sequences import read_sequences
from pipeline.longcontext.curve import context_curve
from pipeline.longcontext.recall import planted_recall
from pipeline.longcontext.repeats import sample_windows
from pipeline.longcontext.streams import stream_log2p
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import DNATokenizer

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Settings:
    """What to measure (see `titans-dna long-context --help`)."""

    contexts: list[int]
    block: int
    blocks: int
    distances: list[int]
    segment: int
    trials: int
    lead: int
    repeat_window: int
    repeat_windows: int
    repeat_k: int
    reset_every: int
    piece_len: int
    seed: int = 0


def held_out_tokens(path: str | Path, fraction: float) -> tuple[str, np.ndarray]:
    """(contig, token ids) of the last `fraction` of the longest record of a sequence file."""
    longest = max(read_sequences(path), key=lambda record: len(record.sequence), default=None)
    if longest is None or not longest.sequence:
        raise input_error(path, "no sequence to measure")
    ids, _ = DNATokenizer().encode(longest.sequence, source=str(path), record=longest.name,
                                   invalid="n")  # fmt: skip
    return longest.name, ids[len(ids) - round(len(ids) * fraction) :]


def measure(lm: TitansLM, ids: np.ndarray, settings: Settings) -> dict[str, Any]:
    """Context curve, planted-repeat recall and natural repeats, memory on and reset."""
    s = settings
    resets = [None] if lm.config.variant == "swa" else [None, s.reset_every]
    names = {None: "memory", s.reset_every: "memory_reset"}
    out: dict[str, Any] = {"settings": dataclasses.asdict(s), "held_out_bases": len(ids)}
    for key in ("curve", "recall", "repeats"):
        out[key] = {}
    for reset in resets:
        label = names[reset]
        log.info("context curve (%s)", label)
        out["curve"][label] = [
            dataclasses.asdict(p)
            for p in context_curve(lm, ids, s.contexts, block=s.block, blocks=s.blocks,
                                   piece_len=s.piece_len, reset_every=reset)
        ]  # fmt: skip
        log.info("planted-repeat recall (%s)", label)
        out["recall"][label] = [
            {**dataclasses.asdict(p), "ratio": p.ratio}
            for p in planted_recall(lm, ids, s.distances, segment=s.segment, lead=s.lead,
                                    trials=s.trials, piece_len=s.piece_len, reset_every=reset,
                                    seed=s.seed)
        ]  # fmt: skip
        out["repeats"][label] = natural_repeats(lm, ids, s, reset)
    return out


def natural_repeats(lm: TitansLM, ids: np.ndarray, s: Settings, reset: int | None) -> dict:
    """Bits/base at distant exact repeats (see `repeats`) and at all positions of the windows."""
    windows = sample_windows(
        ids, s.repeat_window, s.repeat_windows, k=s.repeat_k, beyond=s.reset_every, seed=s.seed
    )
    scores = stream_log2p(lm, windows.windows, piece_len=s.piece_len, reset_every=reset)
    known = ~np.isnan(scores)
    at_repeats = known & windows.mask
    return {
        "repeat_bases": int(at_repeats.sum()),
        "bases": int(known.sum()),
        "bits_at_repeats": float(-scores[at_repeats].mean()) if at_repeats.any() else None,
        "bits_overall": float(-scores[known].mean()),
    }
