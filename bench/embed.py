"""Embedding benchmark: throughput (kbp/s) and peak memory of `titans-dna embed` on real genomes.

Each measurement runs in a fresh process (this script re-invoked with --child), which times the
embedding itself (model loading excluded) and reports back; the parent reads the child's peak
resident memory from the operating system (wait4). Rows: phage lambda whole and in 2,048-bp
windows, 4 Mbp of E. coli whole, and human chr20 slices of 1 Mbp and 10 Mbp whole, whose peak
memory ratio shows that streaming keeps memory independent of sequence length (target <= 1.3).
Prints a markdown table and appends it to docs/benchmarks.md under "## Embedding".

    python bench/embed.py                       # pretrained checkpoint when present
    python bench/embed.py --checkpoint DIR
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SHARED_DATA, append_section, markdown_table

from pipeline.allocator import keep_freed_memory

# Where bench/pretrain.py leaves its model (first match wins).
PRETRAINED_CANDIDATES = (
    REPO / "results" / "bench" / "pretrain" / "model",
    REPO / "results" / "bench" / "pretrain" / "run" / "model",
)
COLUMNS = ["input", "bases", "mode", "seconds", "kbp/s", "peak RSS MiB"]
MEMORY_TARGET = 1.3


def main() -> int:
    args = parse_args()
    if args.child:
        return child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, described = resolve_checkpoint(args.checkpoint, out)
    inputs = prepare_inputs(out)
    plan = [
        ("lambda phage", inputs["phage"], ()),
        ("lambda phage", inputs["phage"], ("--window", "2048")),
        ("E. coli 4 Mbp", inputs["ecoli"], ()),
        ("chr20 1 Mbp", inputs["chr20_1m"], ()),
        ("chr20 10 Mbp", inputs["chr20_10m"], ()),
    ]
    rows = []
    for name, path, extra in plan:
        result = measure(path, checkpoint, out / "out.h5", extra, args)
        mode = "windows of 2,048" if extra else "whole sequence, streamed"
        rows.append(
            {
                "input": name,
                "bases": f"{result['bases']:,}",
                "mode": mode,
                "seconds": f"{result['seconds']:.1f}",
                "kbp/s": f"{result['bases'] / result['seconds'] / 1000:.1f}",
                "peak RSS MiB": round(result["peak_rss_mib"]),
            }
        )
        print(markdown_table(rows[-1:], COLUMNS), flush=True)
    ratio = rows[4]["peak RSS MiB"] / rows[3]["peak RSS MiB"]
    verdict = "meets" if ratio <= MEMORY_TARGET else "misses"
    table = markdown_table(rows, COLUMNS)
    summary = (
        f"Peak memory 10 Mbp / 1 Mbp whole sequence: {ratio:.2f} ({verdict} the target "
        f"<= {MEMORY_TARGET})."
    )
    print(table + "\n\n" + summary)
    if not args.no_append:
        note = (
            f"Model: {described}. CPU, {args.threads} thread(s), shared machine (load average "
            f"{os.getloadavg()[0]:.1f} at the end); each row a fresh process; "
            "seconds = embedding only (reading, tokenizing, model, HDF5 writing; model load "
            "excluded); peak RSS of the whole process."
        )
        append_section("Embedding", f"{note}\n\n{table}\n\n{summary}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default="auto",
        help="model checkpoint; 'auto' = results/bench/pretrain/[run/]model when present, else a "
        "randomly initialised tiny model (speed and memory do not depend on the weights)",
    )
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "embed"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--no-append", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument(
        "--child", nargs=3, metavar=("INPUT", "CHECKPOINT", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--child-args", default="", help=argparse.SUPPRESS)
    return parser.parse_args()


def resolve_checkpoint(choice: str, out: Path) -> tuple[Path, str]:
    if choice != "auto":
        return Path(choice), f"`{choice}`"
    for candidate in PRETRAINED_CANDIDATES:
        if (candidate / "config.json").is_file():
            return candidate, f"pretrained `{candidate.relative_to(REPO)}`"
    import torch

    from titans_dna.models import TitansConfig, TitansLM

    torch.manual_seed(0)
    directory = out / "random-tiny"
    TitansLM(TitansConfig.preset("tiny")).save_pretrained(directory)
    return directory, "tiny preset, random initialisation (no pretrained checkpoint found)"


def prepare_inputs(out: Path) -> dict[str, Path]:
    """Plain FASTA files of the slices (the phage is read as distributed, gzip)."""
    import pysam

    genomes = SHARED_DATA / "genomes"
    with gzip.open(genomes / "ecoli_k12_mg1655.fa.gz", "rt") as handle:
        ecoli = "".join(line.strip() for line in handle if not line.startswith(">"))
    paths = {"phage": genomes / "lambda_phage.fa.gz"}
    paths["ecoli"] = write_fasta(out / "ecoli_4mbp.fa", "ecoli_4mbp", ecoli[:4_000_000])
    with pysam.FastaFile(str(genomes / "human_grch37_chr20.fa.gz")) as fasta:
        chrom = fasta.references[0]
        # From 5 Mbp on: past the telomeric run of N, mostly real sequence.
        paths["chr20_1m"] = write_fasta(
            out / "chr20_1mbp.fa", "chr20_1mbp", fasta.fetch(chrom, 5_000_000, 6_000_000)
        )
        paths["chr20_10m"] = write_fasta(
            out / "chr20_10mbp.fa", "chr20_10mbp", fasta.fetch(chrom, 5_000_000, 15_000_000)
        )
    return paths


def write_fasta(path: Path, name: str, sequence: str) -> Path:
    with open(path, "w") as handle:
        handle.write(f">{name}\n")
        for start in range(0, len(sequence), 80):
            handle.write(sequence[start : start + 80] + "\n")
    return path


def measure(
    path: Path, checkpoint: Path, out: Path, extra: tuple[str, ...], args: argparse.Namespace
) -> dict:
    command = [sys.executable, __file__, "--child", str(path), str(checkpoint), str(out)]
    command += ["--threads", str(args.threads), "--child-args", " ".join(extra)]
    print("$", " ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=REPO)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"child failed with exit code {process.returncode}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def child(args: argparse.Namespace) -> int:
    """Embed one input in this fresh process; print {"seconds", "bases"} as the last line."""
    import h5py
    import torch

    from pipeline.checkpoints import load_backbone
    from pipeline.embed.embedder import Embedder, embed_file

    keep_freed_memory()  # as `titans-dna embed` does
    torch.set_num_threads(args.threads)
    source, checkpoint, out = args.child
    extra = args.child_args.split()
    window = int(extra[extra.index("--window") + 1]) if "--window" in extra else None
    device = torch.device("cpu")
    lm, _ = load_backbone(checkpoint, device)
    embedder = Embedder(lm, device)
    start = time.monotonic()
    embed_file(source, out, embedder, window=window)
    seconds = time.monotonic() - start
    with h5py.File(out, "r") as handle:
        bases = int(handle["lengths"][:].sum())
    print(json.dumps({"seconds": seconds, "bases": bases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
