"""Per-base likelihood tracks: peak memory and speed of `titans-dna likelihood` by length.

Each length is one record of human chr20 (from 30 Mbp on, past the centromere gap), written to
a FASTA file and scored in a fresh process (peak RSS: VmHWM) with bedGraph, bigWig and summary
written, as a user runs it. Streaming keeps memory bounded by the piece length, so 10 Mbp should
peak within 1.3x of 1 Mbp.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SHARED_DATA, append_section, markdown_table, process_memory_mib

GENOME = SHARED_DATA / "genomes" / "human_grch37_chr20.fa.gz"
START = 30_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="TitansLM checkpoint folder")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1_048_576, 10_485_760])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "likelihood")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child", nargs=2, metavar=("FASTA", "OUTPUT"), help=argparse.SUPPRESS)
    return parser.parse_args()


def write_fasta(path: Path, length: int) -> None:
    import pysam

    with pysam.FastxFile(str(GENOME)) as records:
        sequence = next(iter(records)).sequence
    path.write_text(f">chr20_{START}_{length}\n{sequence[START : START + length]}\n")


def child(args: argparse.Namespace) -> int:
    from pipeline.cli import main

    fasta, output = args.child
    started = time.perf_counter()
    code = main(["likelihood", fasta, "--checkpoint", args.checkpoint, "-o", output,
                 "--device", "cpu"])  # fmt: skip
    seconds = time.perf_counter() - started
    print(json.dumps({"code": code, "seconds": seconds, "peak_mib": process_memory_mib()}))
    return code


def measure(args: argparse.Namespace, length: int) -> dict:
    fasta = args.out / f"chr20_{length}.fa"
    if not fasta.exists():
        write_fasta(fasta, length)
    output = args.out / f"chr20_{length}.bedgraph"
    for stale in (output, output.with_suffix(".bw"), output.with_suffix(".json")):
        stale.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, __file__, args.checkpoint, "--child", str(fasta), str(output)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    summary = json.loads(output.with_suffix(".json").read_text())
    return {**result, "length": length, "bits": summary["bits_per_base"]}


def main() -> int:
    args = parse_args()
    if args.child:
        return child(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [measure(args, length) for length in args.lengths]
    rows = [
        {
            "bases": f"{r['length']:,}",
            "peak RSS (MiB)": f"{r['peak_mib']:,.0f}",
            "vs the first": f"{r['peak_mib'] / results[0]['peak_mib']:.2f}x",
            "seconds": f"{r['seconds']:.0f}",
            "bases/s": f"{r['length'] / r['seconds']:,.0f}",
            "bits/base": f"{r['bits']:.4f}",
        }
        for r in results
    ]
    body = markdown_table(rows, list(rows[0])) + (
        f"\n\nOne record of human chr20 from base {START:,} on, scored by `titans-dna "
        f"likelihood` (bedGraph, bigWig and summary written) in a fresh process each, "
        f"{args.threads} thread(s); peak RSS is the process's VmHWM."
    )
    print(body)
    if not args.no_append:
        append_section("Per-base likelihood tracks: memory by length", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
