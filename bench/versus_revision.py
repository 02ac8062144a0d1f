"""The working tree's code against the same code at a git revision, side by side in one process.

    python bench/versus_revision.py --base REV                # the NeuralMemory layer of
                                                              # bench/memory_cpu.py, 2 threads
    python bench/versus_revision.py --base REV --parts tiny   # tiny TitansLM (LMM, MAC): training
                                                              # step and inference, one thread

The revision's `titans_dna` is exported with `git archive` into a temporary folder under a
package name of its own, so both versions import into one process and see the same machine
load. Both get the same weights; the largest output difference is printed first. Each round
runs both, in alternating order, after one untimed pass each; the speed-up is the median of
the per-round time ratios (revision / working tree). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, markdown_table
from memory_cpu import THREADS, Timing, alternate, our_layer, side_by_side
from torch import nn

from pipeline.allocator import keep_freed_memory

BASE_PACKAGE = "titans_base"
LAYER_LENGTHS = (1024, 4096, 16384)
TINY_TRAIN, TINY_INFER = (8, 512), (1, 16384)


def export_revision(revision: str, folder: Path) -> None:
    """titans_dna at ``revision`` as package BASE_PACKAGE in ``folder`` (imports renamed)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "titans_dna"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "titans_dna").rename(folder / BASE_PACKAGE)
    for path in (folder / BASE_PACKAGE).rglob("*.py"):
        path.write_text(re.sub(r"\btitans_dna\b", BASE_PACKAGE, path.read_text()))


def compare_layer(rounds: int) -> str:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    base, ours = our_layer(BASE_PACKAGE), our_layer()
    ours.load_state_dict(base.state_dict())
    x = torch.randn(1, LAYER_LENGTHS[0], base.out_proj.out_features)
    print(f"largest |output difference|: {(base(x)[0] - ours(x)[0]).abs().max():.2e}")
    rows = []
    for length in LAYER_LENGTHS:
        result = side_by_side({"working tree": ours, "base": base}, length, rounds)
        rows.append(
            {
                "tokens": length,
                "base tok/s": length / result.wall["base"],
                "working tree tok/s": length / result.wall["working tree"],
                "speed-up, wall": f"{result.wall_ratio:.3f}x",
                "speed-up, CPU time": f"{result.cpu_ratio:.3f}x",
            }
        )
    return markdown_table(rows, list(rows[0]))


def _tiny(package: str, variant: str) -> nn.Module:
    config = importlib.import_module(f"{package}.models.config")
    return importlib.import_module(f"{package}.models.lm").TitansLM(
        config.preset("tiny", variant=variant)
    )


def _train_step(model: nn.Module, tokens: torch.Tensor) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    logits = model(tokens)[0]
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    model.zero_grad(set_to_none=True)
    return timing


def _inference(model: nn.Module, tokens: torch.Tensor) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model(tokens)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def compare_tiny(rounds: int) -> str:
    torch.set_num_threads(1)
    rows = []
    for variant in ("lmm", "mac"):
        torch.manual_seed(0)
        base = _tiny(BASE_PACKAGE, variant)
        ours = _tiny("titans_dna", variant)
        ours.load_state_dict(base.state_dict())
        models = {"working tree": ours, "base": base}
        train = torch.randint(0, 5, TINY_TRAIN)
        infer = torch.randint(0, 5, TINY_INFER)
        with torch.inference_mode():
            gap = (base(infer[:, :4096])[0] - ours(infer[:, :4096])[0]).abs().max()
        print(f"{variant}: largest |logit difference|: {gap:.2e}")
        cases = (
            (f"training step {TINY_TRAIN[0]} x {TINY_TRAIN[1]}", _train_step, train),
            (f"inference {TINY_INFER[0]} x {TINY_INFER[1]}", _inference, infer),
        )
        for label, step, tokens in cases:
            runs = {name: (lambda m=m, s=step, t=tokens: s(m, t)) for name, m in models.items()}
            result = alternate(runs, rounds)
            rows.append(
                {
                    "variant": variant,
                    "case": label,
                    "base tok/s": tokens.numel() / result.wall["base"],
                    "working tree tok/s": tokens.numel() / result.wall["working tree"],
                    "speed-up": f"{result.wall_ratio:.3f}x",
                }
            )
    return markdown_table(rows, list(rows[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument(
        "--parts", nargs="+", choices=("layer", "tiny"), default=["layer"], help="default: layer"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default: 5)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as folder:
        export_revision(args.base, Path(folder))
        sys.path.insert(0, folder)
        for part in args.parts:
            table = compare_layer(args.rounds) if part == "layer" else compare_tiny(args.rounds)
            print(f"\n### {part} (base {args.base})\n\n{table}\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
