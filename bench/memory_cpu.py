"""Neural memory on the CPU, three measurements, each printed as a markdown table and appended to
docs/benchmarks.md under "## Neural memory on the CPU".

1. Forward+backward tokens/s of our NeuralMemory layer against titans-pytorch's NeuralMemory,
   matched: model width 256, 4 heads of 64, depth-2 MLP memory of hidden width 256, chunk 64 with
   the surprise gradients taken at chunk starts on both sides (their batch_size = 64), batch 1,
   2 threads. The two run alternately in one process; the ratio is the median of per-round ratios.
   Our layer's effective GFLOP/s (counted FLOP x tokens/s) is set against the fp32 matrix-product
   rate measured in the same run; the bf16 rate tells whether the CPU multiplies bf16 in hardware.
2. Scaling of our layer from 1k to 64k tokens against a causal SDPA attention layer of the same
   width (QKV projection, 4 heads of 64, output projection), also alternating.
3. Peak resident memory of streaming inference: TitansLM (tiny preset) scores 64 kbp and 1 Mbp
   in pieces through its recurrent state, each case in a fresh subprocess (peak RSS: VmHWM).

    python bench/memory_cpu.py                 # all three, appends to docs/benchmarks.md
    python bench/memory_cpu.py --quick         # short lengths and one round (a smoke run)
    python bench/memory_cpu.py --no-append     # print only
    python bench/memory_cpu.py --parts scaling # one or more of titans-pytorch scaling streaming

titans-pytorch is a benchmark-only dependency (the `bench` extra), never imported by titans_dna.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from common import append_section, markdown_table, process_memory_mib
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.allocator import keep_freed_memory

THREADS = 2
D_MODEL, HEADS, HEAD_DIM, EXPANSION, CHUNK = 256, 4, 64, 4, 64
RSS_PIECE = 16384
MATMUL_SHAPE = (2048, 256, 1024)  # m, k, n: the size of the layer's projections
SECTION = "Neural memory on the CPU"
PARTS = {
    "titans-pytorch": "vs titans-pytorch",
    "scaling": "Scaling",
    "streaming": "Streaming inference memory",
}


def our_layer(package: str = "titans_dna") -> nn.Module:
    """The benchmark's layer, from ``package``: titans_dna or a copy (bench/versus_revision.py)."""
    layer = importlib.import_module(f"{package}.layers.memory").NeuralMemory
    return layer(
        D_MODEL,
        HEADS,
        depth=2,
        hidden=EXPANSION * HEAD_DIM,
        chunk_size=CHUNK,
        conv_kernel=4,
        theta_max=1.0,
        max_surprise_norm=1.0,
        impl="chunk",
    )


def their_layer() -> nn.Module:
    from titans_pytorch import NeuralMemory
    from titans_pytorch.memory_models import MemoryMLP

    return NeuralMemory(
        dim=D_MODEL,
        chunk_size=CHUNK,
        batch_size=CHUNK,
        dim_head=HEAD_DIM,
        heads=HEADS,
        model=MemoryMLP(HEAD_DIM, depth=2, expansion_factor=float(EXPANSION)),
    )


class CausalAttention(nn.Module):
    """Full causal self-attention of the same width: the quadratic yardstick."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
        self.out = nn.Linear(D_MODEL, D_MODEL, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, D_MODEL))


class Timing(NamedTuple):
    """Wall-clock and CPU seconds (all threads of this process) of one measurement."""

    wall: float
    cpu: float


def fwd_bwd(module: nn.Module, length: int) -> Timing:
    """One forward and backward pass over [1, length, D_MODEL] random input."""
    x = torch.randn(1, length, D_MODEL)
    wall, cpu = time.perf_counter(), time.process_time()
    out = module(x)
    y = out[0] if isinstance(out, tuple) else out
    y.square().mean().backward()
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    module.zero_grad(set_to_none=True)
    return timing


class Comparison(NamedTuple):
    """Median wall seconds per run; median per-round ratios (second / first run)."""

    wall: dict[str, float]
    wall_ratio: float
    cpu_ratio: float


def side_by_side(modules: dict[str, nn.Module], length: int, rounds: int) -> Comparison:
    """``alternate`` one forward+backward pass of each module over ``length`` tokens."""
    return alternate(
        {name: (lambda m=module: fwd_bwd(m, length)) for name, module in modules.items()}, rounds
    )


def alternate(runs: dict[str, Callable[[], Timing]], rounds: int) -> Comparison:
    """Alternate two timed runs (order flipped every round, so neither side always runs on a
    warmer cache) after one untimed call each, as every training step after the first runs;
    ratios are taken within a round, where both saw the same machine load."""
    names = list(runs)
    for run in runs.values():  # untimed: the first pass at a length pays its page faults
        run()
    walls: dict[str, list[float]] = {name: [] for name in names}
    wall_ratios, cpu_ratios = [], []
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        measured = {name: runs[name]() for name in order}
        for name in names:
            walls[name].append(measured[name].wall)
        first, second = measured[names[0]], measured[names[1]]
        wall_ratios.append(second.wall / first.wall)
        cpu_ratios.append(second.cpu / first.cpu)
    return Comparison(
        {n: statistics.median(w) for n, w in walls.items()},
        statistics.median(wall_ratios),
        statistics.median(cpu_ratios),
    )


def versus_titans_pytorch(lengths: list[int], rounds: int) -> str:
    torch.manual_seed(0)
    modules = {"ours": our_layer(), "titans-pytorch": their_layer()}
    flop = {name: mflop_per_token(module, lengths[0]) for name, module in modules.items()}
    peak = matmul_gflops(torch.float32)
    rows = []
    for length in lengths:
        result = side_by_side(modules, length, rounds)
        ours = length / result.wall["ours"]
        rows.append(
            {
                "tokens": length,
                "ours tok/s": ours,
                "titans-pytorch tok/s": length / result.wall["titans-pytorch"],
                "speed-up, wall": f"{result.wall_ratio:.2f}x",
                "speed-up, CPU time": f"{result.cpu_ratio:.2f}x",
                "ours GFLOP/s": f"{flop['ours'] * ours / 1e3:.0f}",
                "of fp32 matmul": f"{flop['ours'] * ours / 1e3 / peak:.0%}",
            }
        )
        print(rows[-1], flush=True)
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in modules.items()}
    bf16 = matmul_gflops(torch.bfloat16)
    return (
        f"Forward+backward, batch 1, {rounds} alternating rounds per length, medians; speed-up "
        f"= titans-pytorch time / our time within a round. Parameters: ours {params['ours']:,}, "
        f"titans-pytorch {params['titans-pytorch']:,} (titans-pytorch "
        f"{version('titans-pytorch')}). FLOP per token (forward+backward, counted by "
        f"`torch.utils.flop_counter` without the depthwise convolutions, which it counts as "
        f"dense): ours {flop['ours']:.2f} M, titans-pytorch {flop['titans-pytorch']:.2f} M. "
        f"Matrix products on the same threads ({MATMUL_SHAPE[0]}x{MATMUL_SHAPE[1]} @ "
        f"{MATMUL_SHAPE[1]}x{MATMUL_SHAPE[2]}): fp32 {peak:.0f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s "
        f"(CPU capability {torch.backends.cpu.get_cpu_capability()}).\n\n"
        + markdown_table(rows, list(rows[0]))
    )


def mflop_per_token(module: nn.Module, length: int) -> float:
    """Forward+backward MFLOP per token, depthwise convolutions left out (2 K per element)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fwd_bwd(module, length)
    counts = counter.get_flop_counts()["Global"]
    total = sum(n for op, n in counts.items() if "convolution" not in str(op))
    return total / length / 1e6


def matmul_gflops(dtype: torch.dtype, repeats: int = 20) -> float:
    """Best-of-``repeats`` GFLOP/s of one matrix product of ``MATMUL_SHAPE`` in ``dtype``."""
    m, k, n = MATMUL_SHAPE
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def scaling(lengths: list[int], rounds: int) -> str:
    torch.manual_seed(0)
    modules = {"memory": our_layer(), "attention": CausalAttention()}
    rows, base = [], None
    for length in lengths:
        result = side_by_side(modules, length, rounds)
        memory_rate = length / result.wall["memory"]
        base = base or memory_rate
        rows.append(
            {
                "tokens": length,
                "memory tok/s": memory_rate,
                "memory tok/s vs first": memory_rate / base,
                "attention tok/s": length / result.wall["attention"],
                "attention time / memory time, wall": f"{result.wall_ratio:.2f}x",
                "same, CPU time": f"{result.cpu_ratio:.2f}x",
            }
        )
        print(rows[-1], flush=True)
    return (
        "Forward+backward, batch 1, our layer against causal SDPA attention of the same width; "
        f"{rounds} alternating rounds per length after an untimed one (ratio > 1: the memory "
        "layer is faster).\n\n" + markdown_table(rows, list(rows[0]))
    )


def streaming_rss(lengths: list[int], piece: int, system_malloc: bool) -> str:
    rows = []
    for length in lengths:
        command = [sys.executable, str(Path(__file__).resolve()), "--rss-case", str(length)]
        command += ["--rss-piece", str(piece)] + (["--system-malloc"] if system_malloc else [])
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    for row in rows:
        row["peak RSS / first"] = row["peak RSS MiB"] / rows[0]["peak RSS MiB"]
    columns = ["bases", "piece", "variant", "peak RSS MiB", "RSS before scoring MiB"]
    columns += ["scoring growth MiB", "wall s", "CPU s", "bits/base", "peak RSS / first"]
    return (
        "TitansLM tiny preset (random weights) scoring a random sequence with "
        "`log_likelihood(tokens, piece_len=piece)` under inference mode, one fresh process per "
        "case; peak RSS is the process's VmHWM.\n\n" + markdown_table(rows, columns)
    )


def rss_case(length: int, piece: int) -> None:
    """Run in a subprocess: score `length` random bases in pieces, print one JSON line."""
    from titans_dna.models import TitansConfig, TitansLM

    torch.manual_seed(0)
    model = TitansLM(TitansConfig.preset("tiny")).eval()
    tokens = torch.randint(5, 9, (1, length))
    before = process_memory_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        total = model.log_likelihood(tokens, piece_len=piece)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = process_memory_mib()
    bits = -float(total[0]) / (length - 1) / float(torch.log(torch.tensor(2.0)))
    print(
        json.dumps(
            {
                "bases": length,
                "piece": piece,
                "variant": model.config.variant,
                "peak RSS MiB": round(peak, 1),
                "RSS before scoring MiB": round(before, 1),
                "scoring growth MiB": round(peak - before, 1),
                "wall s": round(wall, 1),
                "CPU s": round(cpu, 1),
                "bits/base": round(bits, 3),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short lengths, one round")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per length")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="measurements to run (default: all three)",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc malloc as it is (default: tuned as the titans-dna CLI tunes it)",
    )
    parser.add_argument("--rss-case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-piece", type=int, default=RSS_PIECE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    malloc = "glibc default" if args.system_malloc else "tuned"
    if not args.system_malloc and not keep_freed_memory():
        malloc = "glibc default (tuning unavailable)"
    torch.set_num_threads(THREADS)
    if args.rss_case is not None:
        rss_case(args.rss_case, args.rss_piece)
        return 0
    rounds = 1 if args.quick else args.rounds
    lengths = {
        "titans-pytorch": [256, 512] if args.quick else [1024, 4096],
        "scaling": [256, 1024] if args.quick else [1024, 4096, 16384, 65536],
        "streaming": [2048, 8192] if args.quick else [65536, 1_048_576],
    }
    piece = 1024 if args.quick else RSS_PIECE
    sections = []
    for part in args.parts:
        if part == "titans-pytorch":
            text = versus_titans_pytorch(lengths[part], rounds)
        elif part == "scaling":
            text = scaling(lengths[part], rounds)
        else:
            text = streaming_rss(lengths[part], piece, args.system_malloc)
        sections.append(f"### {PARTS[part]}\n\n{text}")
    load = "load average at the end (1/5/15 min): " + " / ".join(
        f"{x:.1f}" for x in os.getloadavg()
    )
    body = f"torch threads: {THREADS}; malloc: {malloc}; {load}.\n\n" + "\n\n".join(sections)
    print(body)
    if not args.no_append:
        append_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
