"""Neural-memory op on the CPU: tokens/s of forward+backward, chunked form vs token-by-token.

Times ``neural_memory`` (impl "chunk" and "naive", same arguments) on random inputs with a
learned initial state, surprise clipping on, and a loss that reaches the output and the end
state. Each configuration runs both implementations side by side; the ratio column is
chunk / naive in tokens/s (the token-by-token form runs a shorter sequence, ``--naive-length``:
its graph would not fit in memory at thousands of tokens, and its cost per token does not depend
on the length). Prints a markdown table; ``--append`` adds it to docs/benchmarks.md under
"## Neural memory op (CPU)".

    python bench/memory_op_cpu.py                       # B = 1, 2, 4; depth 1 and 2; 2 threads
    python bench/memory_op_cpu.py --batch 1 --depths 2 --no-naive
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from common import append_section, markdown_table

from titans_dna.ops.memory import MemoryState, neural_memory

COLUMNS = [
    "depth",
    "B",
    "T",
    "chunk tok/s",
    "chunk fwd tok/s",
    "naive T",
    "naive tok/s",
    "chunk / naive",
]


def make_inputs(args: argparse.Namespace, batch: int, depth: int, length: int) -> tuple[list, list]:
    """Leaf tensors (q, k, v, θ, η, α) and initial weights [H, out, in], all requiring grad."""
    shape = (batch, length, args.heads, args.dim)
    q, k = (F.normalize(torch.randn(shape), dim=-1) for _ in range(2))
    v = torch.randn(shape)
    gates = [
        0.5 * torch.rand(shape[:3]),
        0.5 + 0.5 * torch.rand(shape[:3]),
        0.1 * torch.rand(shape[:3]),
    ]
    hidden = args.expansion * args.dim
    widths = [args.dim] + [hidden] * (depth - 1) + [args.dim]
    weights = [
        torch.randn(args.heads, widths[i + 1], widths[i]) / math.sqrt(widths[i])
        for i in range(depth)
    ]
    return [x.requires_grad_() for x in (q, k, v, *gates)], [w.requires_grad_() for w in weights]


def run_once(
    args: argparse.Namespace, impl: str, inputs: list, weights: list, backward: bool
) -> float:
    """Seconds for one forward (and backward) pass."""
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        state = MemoryState.initial(weights, inputs[0].shape[0])
        y, end = neural_memory(
            *inputs, state, chunk_size=args.chunk, impl=impl, max_surprise_norm=args.clip
        )
        if backward:
            loss = y.square().mean() + sum(w.square().mean() for w in end.weights)
            loss.backward()
    return time.perf_counter() - start


def tokens_per_second(args, impl, inputs, weights, repeats, backward=True) -> float:
    """Best of ``repeats`` passes (shared machines: the best is the least disturbed).

    The chunked form gets one untimed warm-up pass; the token-by-token form, whose cost is
    thousands of small steps, does not need one.
    """
    if impl != "naive":
        run_once(args, impl, inputs, weights, backward)
    best = min(run_once(args, impl, inputs, weights, backward) for _ in range(repeats))
    return inputs[0].shape[0] * inputs[0].shape[1] / best


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4], help="batch sizes")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2], help="memory depths")
    parser.add_argument("--length", type=int, default=4096, help="tokens per sequence")
    parser.add_argument(
        "--naive-length",
        type=int,
        default=512,
        help="tokens per sequence for the token-by-token form (its autograd graph holds every "
        "token's weights: GBs at a few thousand tokens); its cost per token does not depend on T",
    )
    parser.add_argument("--heads", type=int, default=4, help="memory heads")
    parser.add_argument("--dim", type=int, default=64, help="head dimension")
    parser.add_argument("--expansion", type=int, default=2, help="MLP hidden = expansion * dim")
    parser.add_argument("--chunk", type=int, default=64, help="chunk size")
    parser.add_argument("--clip", type=float, default=1.0, help="max surprise norm")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the chunked form")
    parser.add_argument("--no-naive", action="store_true", help="skip the token-by-token form")
    parser.add_argument("--append", action="store_true", help="append to docs/benchmarks.md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for depth in args.depths:
        for batch in args.batch:
            inputs, weights = make_inputs(args, batch, depth, args.length)
            chunk = tokens_per_second(args, "chunk", inputs, weights, args.repeats)
            forward = tokens_per_second(args, "chunk", inputs, weights, args.repeats, False)
            naive = None
            if not args.no_naive:
                inputs, weights = make_inputs(args, batch, depth, args.naive_length)
                naive = tokens_per_second(args, "naive", inputs, weights, 1)
            rows.append(
                {
                    "depth": depth,
                    "B": batch,
                    "T": args.length,
                    "chunk tok/s": chunk,
                    "chunk fwd tok/s": forward,
                    "naive T": None if naive is None else args.naive_length,
                    "naive tok/s": naive,
                    "chunk / naive": None if naive is None else f"{chunk / naive:.1f}x",
                }
            )
            print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    table = markdown_table(rows, COLUMNS)
    note = (
        f"Forward+backward of `neural_memory` (H={args.heads}, D={args.dim}, MLP hidden "
        f"{args.expansion}xD, chunk {args.chunk}, clip {args.clip}), {args.threads} threads; "
        "best of the timed passes."
    )
    print(f"\n{note}\n\n{table}")
    if args.append:
        append_section("Neural memory op (CPU)", f"{note}\n\n{table}")


if __name__ == "__main__":
    main()
