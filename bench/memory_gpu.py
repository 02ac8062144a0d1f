"""Fused Triton neural memory on a GPU: time, TFLOP/s, GB/s and peak memory, side by side with the
chunked PyTorch form, flash-linear-attention's chunk_gated_delta_rule and causal SDPA attention.

The number of tokens B*T is held constant while T grows (B = tokens / T), with H = d_model / D
heads. Per case and method: forward (autograd recording), backward alone (one recorded forward,
then repeated backward passes) and forward+backward, timed with CUDA events
(triton.testing.do_bench, median); peak memory is the allocator's peak over one forward+backward
above the inputs. Counts (per token and head, chunk b, head dim D, MLP hidden F):

- linear memory, dual form: 10 D² + 4 b D + 2 b² FLOPs forward; the MLP memory (depth 2):
  22 D F + 4 b (D + F) + 2 b². Backward counts twice the forward. flash-linear-attention's
  gated delta rule is charged the linear-memory count at the same shape (equal work yardstick).
- causal attention: 2 T D FLOPs forward per token and head (half of 4 T D), backward 2.5x.
- bytes: every input read once and every output written once (q, k, v, y; float32 gates;
  backward adds dy and the input gradients). The kernels' chunk-start states are extra traffic.

    python bench/memory_gpu.py               # CUDA; appends to docs/benchmarks.md
    python bench/memory_gpu.py --dry-run     # tiny sizes on the CPU (Triton interpreter)
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from common import append_section, markdown_table

COLUMNS = [
    "method",
    "D",
    "H",
    "B",
    "T",
    "fwd ms",
    "bwd ms",
    "fwd+bwd ms",
    "x triton",
    "chunk / triton",
    "fla / triton",
    "fwd TFLOP/s",
    "fwd+bwd TFLOP/s",
    "fwd GB/s",
    "fwd+bwd GB/s",
    "peak MiB",
]


@dataclass(frozen=True)
class Case:
    dim: int
    heads: int
    batch: int
    length: int
    chunk: int


@dataclass
class Method:
    """A benchmarked op: ``build(case)`` returns (run, leaves); run() -> output to differentiate."""

    name: str
    build: Callable
    flops_per_token: Callable[[Case], float]
    bwd_flop_ratio: float
    gate_tensors: int


def main() -> int:
    args = parse_args()
    if args.dry_run:
        # the interpreter is chosen when the kernels are defined: before anything imports them
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("memory_gpu.py: error: no CUDA device (use --dry-run on the CPU)", file=sys.stderr)
        return 2
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    rows = []
    for dim in args.dims:
        for length in args.lengths:
            case = Case(dim, args.d_model // dim, max(1, args.tokens // length), length, args.chunk)
            case_rows = [
                measure(method, case, device, dtype, args) for method in methods(case, device, args)
            ]
            add_ratios(case_rows)
            print(markdown_table(case_rows, COLUMNS), flush=True)
            rows.extend(case_rows)
    table = markdown_table(rows, COLUMNS)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(describe(args, dtype) + "\n\n" + table + "\n")
    if not args.dry_run and not args.no_append:
        append_section("Fused Triton kernels", describe(args, dtype) + "\n\n" + table)
    return 0


def add_ratios(rows: list[dict]) -> None:
    """Per row of one case: fwd+bwd time over the fused linear memory's (x triton); on the fused
    rows, the chunked form's and (linear) fla's time over theirs: the speedups."""
    both = {r["method"]: r.get("fwd+bwd ms") for r in rows}
    timed = {name: ms for name, ms in both.items() if isinstance(ms, float)}
    for r in rows:
        ms = timed.get(r["method"])
        if ms is None:
            continue
        r["x triton"] = ms / timed["triton linear"] if "triton linear" in timed else None
        kind = r["method"].removeprefix("triton ")
        if r["method"].startswith("triton "):
            r["chunk / triton"] = timed.get(f"chunk {kind}", math.nan) / ms
            if kind == "linear" and "fla gated delta" in timed:
                r["fla / triton"] = timed["fla gated delta"] / ms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU interpreter")
    parser.add_argument("--tokens", type=int, default=None, help="B*T per case")
    parser.add_argument("--lengths", default=None, help="comma-separated sequence lengths T")
    parser.add_argument("--dims", default=None, help="comma-separated head dims D")
    parser.add_argument("--d-model", type=int, default=None, help="H*D (heads = d_model / D)")
    parser.add_argument("--chunk", type=int, default=None, help="memory chunk size")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--sdpa-max-len", type=int, default=1 << 20, help="longest T for SDPA")
    parser.add_argument("--no-append", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    full = {"tokens": 1 << 20, "lengths": "4096,16384,65536,262144,1048576"}
    full.update({"dims": "64,128", "d_model": 512, "chunk": 64})
    tiny = {"tokens": 64, "lengths": "32,64", "dims": "16,32", "d_model": 32, "chunk": 16}
    for key, value in (tiny if args.dry_run else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.lengths = [int(x) for x in str(args.lengths).split(",")]
    args.dims = [int(x) for x in str(args.dims).split(",")]
    return args


def methods(case: Case, device, args: argparse.Namespace) -> list[Method]:
    """The methods that apply to this case on this device."""
    linear = lambda c: 10 * c.dim**2 + 4 * c.chunk * c.dim + 2 * c.chunk**2  # noqa: E731
    found = [
        Method("triton linear", memory_builder("triton", 0), linear, 2.0, 3),
        Method("chunk linear", memory_builder("chunk", 0), linear, 2.0, 3),
    ]
    if case.dim <= 64:
        hidden = 2 * case.dim

        def mlp(c: Case) -> float:
            return 22 * c.dim * hidden + 4 * c.chunk * (c.dim + hidden) + 2 * c.chunk**2

        found.append(Method("triton mlp", memory_builder("triton", hidden), mlp, 2.0, 3))
        found.append(Method("chunk mlp", memory_builder("chunk", hidden), mlp, 2.0, 3))
    if device.type == "cuda" and fla_rule() is not None:
        found.append(Method("fla gated delta", fla_builder, linear, 2.0, 2))
    if case.length <= args.sdpa_max_len:
        found.append(Method("sdpa causal", sdpa_builder, lambda c: 2 * c.length * c.dim, 2.5, 0))
    return found


def fla_rule() -> Callable | None:
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except ImportError:
        return None
    return chunk_gated_delta_rule


def random_inputs(case: Case, device, dtype, seed: int = 0):
    """q, k (L2-normalised), v [B, T, H, D] and three gates [B, T, H] in (0, 1)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (case.batch, case.length, case.heads, case.dim)
    q, k = (F.normalize(torch.randn(shape, generator=gen, device=device), dim=-1) for _ in "qk")
    v = torch.randn(shape, generator=gen, device=device)
    gates = [torch.rand(shape[:3], generator=gen, device=device) for _ in range(3)]
    return [q.to(dtype), k.to(dtype), v.to(dtype)], gates


def memory_builder(impl: str, hidden: int) -> Callable:
    """A builder for neural_memory(impl=...): linear (hidden 0) or a depth-2 MLP memory."""

    def build(case: Case, device, dtype):
        import torch

        from titans_dna.ops.memory import MemoryState, neural_memory

        qkv, (theta, eta, alpha) = random_inputs(case, device, dtype)
        theta, eta, alpha = 0.1 * theta, 0.5 + 0.5 * eta, 0.1 * alpha
        widths = [case.dim, hidden, case.dim] if hidden else [case.dim, case.dim]
        weights = [
            torch.randn(case.heads, o, i, device=device) / math.sqrt(i)
            for i, o in itertools.pairwise(widths)
        ]
        leaves = [*qkv, theta, eta, alpha, *weights]
        for t in leaves:
            t.requires_grad_()

        def run():
            state = MemoryState.initial(weights, case.batch)
            y, _ = neural_memory(*qkv, theta, eta, alpha, state, chunk_size=case.chunk, impl=impl)
            return y

        return run, leaves

    return build


def fla_builder(case: Case, device, dtype):
    import torch

    rule = fla_rule()
    qkv, (decay, beta, _) = random_inputs(case, device, dtype)
    log_decay = torch.log(0.9 + 0.1 * decay)
    leaves = [*qkv, log_decay, beta]
    for t in leaves:
        t.requires_grad_()

    def run():
        out, _ = rule(*qkv, g=log_decay, beta=beta, output_final_state=True)
        return out

    return run, leaves


def sdpa_builder(case: Case, device, dtype):
    import torch.nn.functional as F

    qkv, _ = random_inputs(case, device, dtype)
    leaves = [x.transpose(1, 2).contiguous().requires_grad_() for x in qkv]  # [B, H, T, D]

    def run():
        return F.scaled_dot_product_attention(*leaves, is_causal=True)

    return run, leaves


def measure(method: Method, case: Case, device, dtype, args: argparse.Namespace) -> dict:
    """One table row: times, rates and peak memory of `method` on `case` (or the failure)."""
    import torch

    row = {"method": method.name, "D": case.dim, "H": case.heads, "B": case.batch}
    row["T"] = case.length
    try:
        run, leaves = method.build(case, device, dtype)
        out = run()
        grad_out = torch.randn_like(out)

        def backward(output):
            torch.autograd.grad(output, leaves, grad_out, retain_graph=True)

        times = {
            "fwd ms": timer(run, device, args.dry_run),
            "bwd ms": timer(lambda: backward(out), device, args.dry_run),
            "fwd+bwd ms": timer(lambda: backward(run()), device, args.dry_run),
        }
        out = None  # free the recorded graph before measuring memory
        peak = peak_memory(lambda: backward(run()), device)
    except torch.cuda.OutOfMemoryError:
        row["fwd ms"] = "OOM"
        return row
    tokens = case.batch * case.length * case.heads
    fwd_flops = tokens * method.flops_per_token(case)
    fwd_bytes, bwd_bytes = compulsory_bytes(case, dtype, method.gate_tensors)
    row.update(times)
    row["fwd TFLOP/s"] = fwd_flops / times["fwd ms"] / 1e9
    row["fwd+bwd TFLOP/s"] = fwd_flops * (1 + method.bwd_flop_ratio) / times["fwd+bwd ms"] / 1e9
    row["fwd GB/s"] = fwd_bytes / times["fwd ms"] / 1e6
    row["fwd+bwd GB/s"] = (fwd_bytes + bwd_bytes) / times["fwd+bwd ms"] / 1e6
    row["peak MiB"] = peak / 2**20 if peak is not None else None
    return row


def compulsory_bytes(case: Case, dtype, gate_tensors: int) -> tuple[int, int]:
    """Bytes every implementation must move: forward (q, k, v, gates in; y out) and backward
    (q, k, v, gates, dy in; dq, dk, dv, gate gradients out)."""
    import torch

    elem = torch.finfo(dtype).bits // 8
    per_head = case.batch * case.length * case.heads
    vec, gate = per_head * case.dim * elem, per_head * 4 * gate_tensors
    return 4 * vec + gate, 7 * vec + 2 * gate


def timer(fn: Callable[[], object], device, dry_run: bool) -> float:
    """Milliseconds of fn(): median over CUDA-event timings (do_bench), or one CPU call in a
    dry run."""
    if dry_run:
        start = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - start)
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))


def peak_memory(fn: Callable[[], object], device) -> int | None:
    """Peak allocated bytes during fn() above what was allocated before (None off CUDA)."""
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def describe(args: argparse.Namespace, dtype) -> str:
    return (
        f"B*T = {args.tokens} tokens per case, d_model = H*D = {args.d_model}, memory chunk "
        f"{args.chunk}, inputs {dtype} (gates float32); MLP memory: depth 2, hidden 2D. "
        "x triton: fwd+bwd time over the fused linear memory's in the same case; on the fused "
        "rows, chunk / triton and fla / triton: chunk.py's and fla chunk_gated_delta_rule's "
        "fwd+bwd time over theirs (the speedup). "
        "Counts as in bench/memory_gpu.py's docstring."
    )


if __name__ == "__main__":
    raise SystemExit(main())
