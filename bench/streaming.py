"""Streaming never hurts: bits/base by position when held-out sequence streams in one pass.

Regions of held-out human chr20 (the last 5%, N-free) stream through the model in one pass
(`--length` bases each, 64 kbp and 1 Mbp by default); the same bases are also scored in
independent windows of `--window` bases. The table gives bits/base per position range for both:
a model whose streamed state drifts past its training length gets worse along the stream, while
the windows stay flat.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
from common import SHARED_DATA, append_section, markdown_table

EDGES = [0, 512, 2048, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="TitansLM checkpoint folder")
    parser.add_argument("--lengths", type=int, nargs="+", default=[65536, 1048576])
    parser.add_argument("--regions", type=int, default=2, help="regions per length")
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    return parser.parse_args()


def regions(ids: np.ndarray, length: int, count: int) -> list[int]:
    """Starts of `count` disjoint N-free stretches of length + 1, the first ones found."""
    from titans_dna.tokenizer import N_ID

    starts, position = [], 0
    while len(starts) < count and position + length + 1 <= len(ids):
        if (ids[position : position + length + 1] == N_ID).any():
            position += 10_000
            continue
        starts.append(position)
        position += length + 1
    return starts


def main() -> int:
    import torch

    from pipeline.batching import stream_piece_len
    from pipeline.longcontext.measure import held_out_tokens
    from pipeline.longcontext.streams import stream_log2p
    from titans_dna.models.lm import TitansLM

    args = parse_args()
    if any(length % args.window for length in args.lengths):
        raise SystemExit("every --lengths value must be a multiple of --window")
    torch.set_num_threads(args.threads)
    lm = TitansLM.from_pretrained(args.checkpoint)
    piece = stream_piece_len(lm.config.stream_multiple, 4096)
    _, ids = held_out_tokens(SHARED_DATA / "genomes" / "human_grch37_chr20.fa.gz", 0.05)
    sections = []
    for length in args.lengths:
        rows = {}
        for number, start in enumerate(regions(ids, length, args.regions), start=1):
            stretch = ids[start : start + length + 1].astype(np.int64)
            streamed = stream_log2p(lm, stretch[None], piece_len=piece, score_from=0)[0]
            split = np.stack(
                [stretch[i : i + args.window + 1] for i in range(0, length, args.window)]
            )
            windowed = stream_log2p(lm, split, piece_len=piece, score_from=0)
            # both indexed by position; a window's first base has no score
            windowed = np.concatenate([[np.nan], windowed[:, 1:].reshape(-1)])
            for lo, hi in itertools.pairwise(EDGES):
                if lo >= length:
                    break
                label = f"{lo:,}-{min(hi, length):,}"
                row = rows.setdefault(lo, {"positions": label})
                part = slice(lo, min(hi, length))
                row[f"region {number} streamed"] = float(-np.nanmean(streamed[part]))
                row[f"region {number} windows"] = float(-np.nanmean(windowed[part]))
        table = [rows[k] for k in sorted(rows)]
        sections.append(
            f"### {length:,} bases in one pass\n\n" + markdown_table(table, list(table[0]))
        )
    body = "\n\n".join(sections) + (
        f"\n\nHeld-out: the last 5% of human chr20, N-free regions; streamed in pieces of {piece} "
        f"tokens with the state carried; windows: independent windows of {args.window:,} bases "
        "(each window's first base scored from the window alone). Bits/base of the same bases."
    )
    print(body)
    if not args.no_append:
        append_section("Streaming at long context", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
