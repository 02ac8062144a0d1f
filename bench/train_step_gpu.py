"""One training step of a preset model on one long sequence: time and peak GPU memory.

A step is forward, cross-entropy, backward and an AdamW update on B sequences of T random
tokens, under bfloat16 autocast with each block's activations recomputed in the backward
(``gradient_checkpointing``), as the GPU pretraining configs run. The memory runs in the fused
kernels with ``memory_impl="triton"``, so a fallback to chunk.py is an error, not a slow row.

    python bench/train_step_gpu.py --preset small --tokens 1048576
    python bench/train_step_gpu.py --dry-run      # a 2k-token tiny model on the CPU
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import markdown_table

COLUMNS = ["preset", "variant", "B", "T", "memory impl", "step s", "tokens/s", "peak GiB", "loss"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="TitansConfig preset")
    parser.add_argument("--variants", nargs="+", default=["mac"], help="model variants")
    parser.add_argument("--tokens", type=int, default=1 << 20, help="tokens per sequence T")
    parser.add_argument("--batch", type=int, default=1, help="sequences per step B")
    parser.add_argument("--steps", type=int, default=2, help="steps; the last one is timed")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, 2k tokens, CPU")
    return parser.parse_args(argv)


def step_row(args: argparse.Namespace, variant: str) -> dict:
    import torch
    import torch.nn.functional as F

    from titans_dna.models.config import TitansConfig
    from titans_dna.models.lm import TitansLM

    device = torch.device("cpu" if args.dry_run else "cuda")
    impl = "chunk" if args.dry_run else "triton"
    config = TitansConfig.preset(args.preset, variant=variant, memory_impl=impl)
    model = TitansLM(config).to(device)
    model.gradient_checkpointing = True
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    tokens = torch.randint(1, 5, (args.batch, args.tokens + 1), generator=gen, device=device)
    row = {"preset": args.preset, "variant": variant, "B": args.batch, "T": args.tokens}
    row["memory impl"] = impl
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(tokens[:, :-1])[0]
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        del logits
    row["step s"] = seconds
    row["tokens/s"] = args.batch * args.tokens / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    row["peak GiB"] = peak
    row["loss"] = loss.item()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.preset, args.tokens, args.steps = "tiny", 2048, 1
    else:
        os.environ.pop("TRITON_INTERPRET", None)
        import torch

        if not torch.cuda.is_available():
            print("train_step_gpu.py: error: no CUDA device (use --dry-run)", file=sys.stderr)
            return 2
    rows = []
    for variant in args.variants:
        try:
            rows.append(step_row(args, variant))
        except Exception as err:  # an OOM or a rejected kernel is a row, not the end of the run
            failure = f"failed: {type(err).__name__}: {str(err)[:160]}"
            rows.append({"preset": args.preset, "variant": variant, "memory impl": failure})
    table = markdown_table(rows, COLUMNS)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table + "\n")
    return 0 if all("step s" in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
