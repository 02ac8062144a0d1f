"""Gradient norms at long context, at initialisation: every variant, both memory updates.

For each variant of the tiny preset, a fresh model (seeds 0, 1, 2) takes one forward and
backward pass of the mean next-token loss over T random tokens; the table gives the global
gradient norm (the median and the largest over seeds) for the normalized update at the preset's
learning-rate cap and for the paper's update at the caps the presets used to need. The bound the
tests assert (tests/models/test_long_context.py) is 100 at 16k tokens.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from common import append_section, markdown_table

VARIANTS = ("lmm", "mac", "mag", "mal")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    return parser.parse_args()


def gradient_norm(variant: str, length: int, seed: int, **overrides) -> tuple[float, float]:
    """(global gradient norm, seconds) of one forward and backward pass at initialisation."""
    import torch
    import torch.nn.functional as F

    from titans_dna.models import TitansConfig, TitansLM

    torch.manual_seed(seed)
    model = TitansLM(TitansConfig.preset("tiny", variant=variant, **overrides))
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(5, 9, (1, length + 1), generator=gen)
    started = time.perf_counter()
    logits = model(tokens[:, :-1])[0]
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    seconds = time.perf_counter() - started
    squares = sum(p.grad.double().square().sum() for p in model.parameters() if p.grad is not None)
    return math.sqrt(float(squares)), seconds


def main() -> int:
    import torch

    from titans_dna.models import TitansConfig

    args = parse_args()
    torch.set_num_threads(args.threads)
    cap = TitansConfig.preset("tiny").theta_max
    settings = [("normalized", cap, length) for length in args.lengths]
    settings += [("paper", theta, args.lengths[0]) for theta in (0.1, 0.03)]
    rows = []
    for update, theta, length in settings:
        row = {"update": update, "theta_max": f"{theta:g}", "tokens": f"{length:,}"}
        for variant in VARIANTS:
            norms = [
                gradient_norm(variant, length, seed, memory_update=update, theta_max=theta)[0]
                for seed in args.seeds
            ]
            finite = all(math.isfinite(n) for n in norms)
            row[variant] = (
                f"{statistics.median(norms):.3g} / {max(norms):.3g}" if finite else "non-finite"
            )
            print(update, theta, length, variant, norms, flush=True)
        rows.append(row)
    columns = ["update", "theta_max", "tokens", *VARIANTS]
    body = (
        markdown_table(rows, columns)
        + f"\n\nCells: median / largest global gradient norm over seeds {args.seeds} (model "
        "and tokens), tiny preset, chunk 64, one forward and backward pass of the mean "
        "next-token loss over random tokens at initialisation."
    )
    print(body)
    if not args.no_append:
        append_section("Gradients at long context", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
