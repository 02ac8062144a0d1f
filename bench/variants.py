"""Variant scoring speed: one streamed pass with state snapshots against independent windows.

Random SNVs on human chr20 (REF from the genome, ALT a different base), in two densities: a
dense locus (`--variants` within 1 Mbp, a fine-mapping locus or a saturation scan) and sparse
variants (`--sparse-variants`) over the whole chromosome. Both methods score with `--context`
bases of left context and a `--window`-base window, one CPU thread, side by side in one run;
the window method is timed on the first `--window-variants` variants (its cost per variant
does not depend on the others). Peak memory of the streamed method is measured in fresh
processes at two context lengths and two variant counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from common import REPO, SHARED_DATA, append_section, markdown_table, process_memory_mib

GENOME = SHARED_DATA / "genomes" / "human_grch37_chr20.fa.gz"
LOCUS = (30_000_000, 31_000_000)  # 1 Mbp of chr20 (past the centromere's N)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="TitansLM checkpoint folder")
    parser.add_argument("--variants", type=int, default=1000)
    parser.add_argument("--sparse-variants", type=int, default=100)
    parser.add_argument("--window-variants", type=int, default=100)
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def random_snvs(sequence: bytes, count: int, lo: int, hi: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    picked: list[tuple] = []
    while len(picked) < count:
        pos = int(rng.integers(lo, hi))
        ref = chr(sequence[pos])
        if ref in "ACGT":
            alt = "ACGT"[("ACGT".index(ref) + int(rng.integers(1, 4))) % 4]
            picked.append(("20", pos + 1, ref, alt))
    return sorted(set(picked), key=lambda v: v[1])


def timed(lm, variants, method: str, context: int, window: int) -> tuple[float, list]:
    from pipeline.variants.score import score_variants

    started = time.perf_counter()
    scores = score_variants(lm, GENOME, variants, window=window, context=context, method=method)
    return time.perf_counter() - started, scores


def memory_child(spec: str) -> dict:
    """In a fresh process: score variants with the streamed method; peak RSS."""
    import pysam
    import torch

    from titans_dna.models.lm import TitansLM

    args = json.loads(spec)
    torch.set_num_threads(1)
    lm = TitansLM.from_pretrained(args["checkpoint"])
    with pysam.FastaFile(str(GENOME)) as fasta:
        sequence = fasta.fetch("20").upper().encode()
    variants = random_snvs(sequence, args["count"], *LOCUS, seed=1)
    timed(lm, variants, "stream", args["context"], args["window"])
    return {**args, "peak_mb": process_memory_mib()}


def main() -> int:
    args = parse_args()
    if args.child:
        print(json.dumps(memory_child(args.child)))
        return 0
    import pysam
    import torch

    from titans_dna.models.lm import TitansLM

    torch.set_num_threads(1)
    lm = TitansLM.from_pretrained(args.checkpoint)
    with pysam.FastaFile(str(GENOME)) as fasta:
        sequence = fasta.fetch("20").upper().encode()
    densities = {
        "dense (1 Mbp locus)": random_snvs(sequence, args.variants, *LOCUS, seed=0),
        "sparse (whole chr20)": random_snvs(sequence, args.sparse_variants, 100_000, 62_900_000, 0),
    }
    rows = []
    for label, variants in densities.items():
        stream_s, stream = timed(lm, variants, "stream", args.context, args.window)
        subset = variants[: args.window_variants]
        window_s, window = timed(lm, subset, "window", args.context, args.window)
        agree = np.corrcoef([s.llr for s in stream[: len(subset)]], [w.llr for w in window])
        rows.append({
            "variants": label, "count": f"{len(variants):,}",
            "stream variants/s": len(variants) / stream_s,
            "window variants/s": len(subset) / window_s,
            "speed-up": (len(variants) / stream_s) / (len(subset) / window_s),
            "score correlation": agree[0, 1],
        })  # fmt: skip
        print(rows[-1], flush=True)
    memory = []
    for count, context in ((args.variants, 65536), (args.variants, 1048576), (100, 65536)):
        spec = json.dumps({"checkpoint": args.checkpoint, "count": count, "context": context,
                           "window": args.window})  # fmt: skip
        done = subprocess.run([sys.executable, __file__, args.checkpoint, "--child", spec],
                              capture_output=True, text=True, cwd=REPO, check=True)  # fmt: skip
        memory.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(memory[-1], flush=True)
    memory_rows = [
        {"variants": f"{m['count']:,}", "context (bases)": f"{m['context']:,}",
         "peak RSS (MiB)": f"{m['peak_mb']:,.0f}"}
        for m in memory
    ]  # fmt: skip
    ratio = memory[1]["peak_mb"] / memory[0]["peak_mb"]
    body = (
        markdown_table(rows, list(rows[0]))
        + f"\n\nRandom SNVs on chr20; left context {args.context:,} bases (stream: at least, "
        f"window: exactly), window {args.window} bases, both strands, 1 CPU thread; the window "
        f"method timed on the first {args.window_variants} variants; score correlation: "
        "Pearson r of the two methods' scores on those variants.\n\n"
        + markdown_table(memory_rows, list(memory_rows[0]))
        + f"\n\nStreamed method, dense locus, fresh process each; peak RSS at 1 Mbp over 64 kbp "
        f"of context: {ratio:.2f}."
    )
    print(body)
    if not args.no_append:
        append_section("Variant scoring", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
