"""Long context benchmark: context curve, planted-repeat recall and natural repeats.

For each model given (a trained Titans model, optionally a second variant, and a
sliding-window-attention-only model trained the same way) and each genome (the held-out last 5%
of human chr20, and all of E. coli, which no model saw in training), `titans-dna long-context`
measures with the memory as trained and reset every `--reset-every` bases. The tables compare:

- the context curve: bits/base of the same held-out blocks after 512 .. 1M bases of left
  context, and the memory-on minus memory-off gap at every length;
- planted-repeat recall: second-copy over first-copy bits/base of a random 200-bp segment written
  twice into real background, 1k .. 1M bases apart;
- natural repeats (chr20, E. coli and P. falciparum, 80% AT): bits/base where the preceding 20
  bases occurred earlier in the window, more than the reset interval back.

Each measurement runs in its own process, `--jobs` at a time, one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import REPO, SHARED_DATA, append_section, markdown_table

GENOMES = {
    "chr20": ("human_grch37_chr20.fa.gz", 0.05),
    "E. coli": ("ecoli_k12_mg1655.fa.gz", 1.0),
    "P. falciparum": ("pfalciparum_3d7.fa.gz", 1.0),
}
CONTEXTS = [512, 2048, 8192, 32768, 131072, 1048576]
DISTANCES = [1024, 4096, 16384, 65536, 262144, 1048576]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        nargs=2,
        metavar=("LABEL", "CHECKPOINT"),
        required=True,
        help="a model to measure (repeat the option for several)",
    )
    parser.add_argument("--contexts", type=int, nargs="+", default=CONTEXTS)
    parser.add_argument("--distances", type=int, nargs="+", default=DISTANCES)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--reset-every", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "long_context")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    return parser.parse_args()


def measure(args: argparse.Namespace, label: str, checkpoint: str, genome: str) -> dict:
    file, fraction = GENOMES[genome]
    out = args.out / f"{label}-{genome.replace(' ', '').replace('.', '')}.json"
    curve_and_recall = genome != "P. falciparum"  # its records are too short for 1M contexts
    command = [
        sys.executable, "-m", "pipeline.cli", "long-context", str(SHARED_DATA / "genomes" / file),
        "--checkpoint", checkpoint, "-o", str(out), "--held-out", str(fraction),
        "--reset-every", str(args.reset_every), "--blocks", str(args.blocks),
        "--trials", str(args.trials), "--device", "cpu",
    ]  # fmt: skip
    if curve_and_recall:
        command += [
            "--contexts",
            *map(str, args.contexts),
            "--distances",
            *map(str, args.distances),
        ]
    else:
        command += ["--contexts", "512", "--distances", "1024", "--blocks", "1", "--trials", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{label} on {genome} failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["label"], result["genome"] = label, genome
    return result


def column(label: str, mode: str, modes: dict) -> str:
    """A model's column name: with the mode ("memory", "memory reset") unless it has one only
    (a model without a memory)."""
    return label if len(modes) == 1 else f"{label}, {mode.replace('_', ' ')}"


def curve_table(results: list[dict], genome: str) -> str:
    rows = {}
    for r in (r for r in results if r["genome"] == genome):
        for mode, points in r["curve"].items():
            for p in points:
                row = rows.setdefault(p["context"], {"context (bases)": f"{p['context']:,}"})
                row[column(r["label"], mode, r["curve"])] = p["bits_per_base"]
        if "memory_reset" in r["curve"]:
            for on, off in zip(r["curve"]["memory"], r["curve"]["memory_reset"], strict=True):
                rows[on["context"]][f"{r['label']}, on − off"] = (
                    f"{on['bits_per_base'] - off['bits_per_base']:+.4f}"
                )
    table = [rows[c] for c in sorted(rows)]
    return markdown_table(table, list(table[0]))


def recall_table(results: list[dict], genome: str) -> str:
    rows = {}
    for r in (r for r in results if r["genome"] == genome):
        for mode, points in r["recall"].items():
            for p in points:
                row = rows.setdefault(p["distance"], {"distance (bases)": f"{p['distance']:,}"})
                row[column(r["label"], mode, r["recall"])] = (
                    f"{p['ratio']:.3f} ({p['second']:.2f} / {p['first']:.2f})"
                )
    table = [rows[d] for d in sorted(rows)]
    return markdown_table(table, list(table[0]))


def repeats_table(results: list[dict]) -> str:
    table = []
    for r in results:
        for mode, rep in r["repeats"].items():
            table.append({
                "genome": r["genome"], "model": column(r["label"], mode, r["repeats"]),
                "bits/base at distant repeats": rep["bits_at_repeats"],
                "bits/base overall": rep["bits_overall"],
                "repeat bases / bases": f"{rep['repeat_bases']:,} / {rep['bases']:,}",
            })  # fmt: skip
    return markdown_table(table, list(table[0]))


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(label, ckpt, genome) for label, ckpt in args.model for genome in GENOMES]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: measure(args, *job), jobs))
    sections = []
    for genome in ("chr20", "E. coli"):
        sections.append(f"### Context curve: {genome}\n\n" + curve_table(results, genome))
        sections.append(f"### Planted-repeat recall: {genome}\n\n" + recall_table(results, genome))
    sections.append("### Natural repeats\n\n" + repeats_table(results))
    models = "; ".join(f"{label}: `{ckpt}`" for label, ckpt in args.model)
    body = "\n\n".join(sections) + (
        f"\n\nModels: {models}. Memory off: the memory reset to its learned initial state every "
        f"{args.reset_every:,} bases. Context curve: {args.blocks} blocks of 1,024 bases; recall: "
        f"{args.trials} plantings per distance, ratio (second copy / first copy bits/base)."
    )
    print(body)
    if not args.no_append:
        append_section("Long context", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
