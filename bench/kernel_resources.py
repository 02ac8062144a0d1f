"""Shared memory, registers and spills of the fused memory kernels, compiled ahead of time for
sm_90 (H100/H200) and sm_100 (B200) with Triton's bundled ptxas: no GPU needed.

Each shipped preset's memory (TitansConfig.preset: head dim, MLP hidden width, chunk, clipping,
update) is compiled with the launch settings a real call uses (``triton_launch.planned_launches``):
the training forward (saving chunk-start states), the backward, and the inference forward.

    python bench/kernel_resources.py                     # table on stdout
    python bench/kernel_resources.py --json out.json     # and the rows as JSON
    python bench/kernel_resources.py --append            # append the table to docs/benchmarks.md
    python bench/kernel_resources.py --combos small:bf16:sm_90    # one preset, dtype and target
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

os.environ.pop("TRITON_INTERPRET", None)  # compiling needs the real JIT, not the interpreter

import torch
from common import append_section, markdown_table

from titans_dna.ops.memory.triton_compile import TARGETS, compile_launch, preset_config
from titans_dna.ops.memory.triton_launch import planned_launches

PRESETS = ("tiny", "small", "base")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
COLUMNS = [
    "preset", "dtype", "target", "kernel", "pass", "warps", "shared bytes", "limit", "fits",
    "registers", "spill stores B", "spill loads B", "trap",
]  # fmt: skip


def _rows(preset: str, dtype: str, target: str) -> list[dict]:
    rows, done = [], {}
    for save in (True, False):
        cfg = preset_config(preset, DTYPES[dtype], save=save)
        launches = planned_launches(cfg, DTYPES[dtype])
        for launch, kind in zip(launches, ("forward", "backward"), strict=False):
            # the MLP memory's inference forward is its training forward's compiled kernel
            key = (launch.kernel.fn.__name__, tuple(sorted(launch.meta.items())))
            if key not in done:
                done[key] = compile_launch(launch, target)
            res = done[key]
            row = {"preset": preset, "dtype": dtype, "pass": kind if save else "inference"}
            row |= asdict(res) | {"fits": res.fits}
            rows.append(row)
    return rows


def _cells(row: dict) -> dict:
    return {
        **row,
        "kernel": row["kernel"].removesuffix("_kernel"),
        "shared bytes": f"{row['shared']:,}",
        "limit": f"{row['shared_limit']:,}",
        "fits": "yes" if row["fits"] else "**no**",
        "spill stores B": row["spill_stores"],
        "spill loads B": row["spill_loads"],
        "trap": "**yes**" if row["trap"] else "no",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bf16", "fp32"])
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument(
        "--combos", nargs="+", metavar="PRESET:DTYPE:TARGET", help="these combinations instead"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="compiler processes")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--append", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args(argv)
    combos = list(itertools.product(args.presets, args.dtypes, args.targets))
    if args.combos:
        combos = [tuple(combo.split(":")) for combo in args.combos]
        known = set(itertools.product(PRESETS, DTYPES, TARGETS))
        for combo in combos:
            if combo not in known:
                parser.error(f"--combos: {':'.join(combo)} is not PRESET:DTYPE:TARGET")
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(combos)))) as pool:
        rows = [row for part in pool.map(_rows, *zip(*combos, strict=True)) for row in part]
    table = markdown_table([_cells(row) for row in rows], COLUMNS)
    print(table)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    if args.append:
        append_section("Fused kernel resources (ahead-of-time, no GPU)", table)
    return 0 if all(row["fits"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
