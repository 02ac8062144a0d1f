"""Trained models' training step with subnormal floats computed exactly against flushed to zero.

    python bench/subnormals.py --model results/pretrain/model [--model OTHER ...] [--threads 1]

Once training has annealed, some of the memory's gate products fall below float32's smallest
normal number (1.18e-38), where x86 arithmetic is many times slower; the titans-dna commands
flush such values to zero (`pipeline.device.flush_subnormals`). Per model: seconds per
forward+backward of a batch of random bases with subnormals kept and flushed, in alternating
rounds (`memory_cpu.alternate`), and the median per-round ratio kept / flushed. Prints a
markdown table and appends it to docs/benchmarks.md unless --no-append.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import append_section, markdown_table
from memory_cpu import Timing, alternate

from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import A_ID

COLUMNS = ["model", "parameters", "kept (s)", "flushed (s)", "kept / flushed"]


def training_step(model: TitansLM, tokens: torch.Tensor, flush: bool) -> Timing:
    """One forward and backward pass over `tokens` with subnormals flushed or kept."""
    torch.set_flush_denormal(flush)
    wall, cpu = time.perf_counter(), time.process_time()
    model(tokens)[0].float().mean().backward()
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    model.zero_grad(set_to_none=True)
    return timing


def compare(folder: Path, batch: int, context: int, rounds: int) -> dict:
    model = TitansLM.from_pretrained(folder)
    tokens = A_ID + torch.randint(
        0, 4, (batch, context), generator=torch.Generator().manual_seed(0)
    )
    runs = {flush: (lambda f=flush: training_step(model, tokens, f)) for flush in (True, False)}
    result = alternate({"flushed": runs[True], "kept": runs[False]}, rounds)
    return {
        "model": str(folder),
        "parameters": f"{model.num_parameters():,}",
        "kept (s)": f"{result.wall['kept']:.3f}",
        "flushed (s)": f"{result.wall['flushed']:.3f}",
        "kept / flushed": f"{result.wall_ratio:.2f}x",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="a pretrained model folder (repeat for several)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--batch", type=int, default=8, help="windows per step (default: 8)")
    parser.add_argument("--context", type=int, default=512, help="bases per window (default: 512)")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default: 6)")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rows = [compare(m, args.batch, args.context, args.rounds) for m in args.model]
    finally:
        torch.set_flush_denormal(True)  # as the titans-dna commands leave it
    body = (
        f"Forward+backward of {args.batch} x {args.context} random bases, {args.threads} "
        f"thread(s), median of {args.rounds} alternating rounds.\n\n"
        + markdown_table(rows, COLUMNS)
    )
    print(body)
    if not args.no_append:
        append_section("Subnormal floats in a trained model's training step", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
