"""Tokenizing throughput and token-store random access, side by side in one run.

On human_grch37_chr20.fa.gz (63 Mbp, bgzip with .fai/.gzi), each repeat runs, interleaved:

- pysam FastxFile: decompress and parse the file record by record (merely reading it);
- pysam FastaFile: fetch the chromosome through its index in 4 Mbp segments;
- `write_token_store`: the whole `titans-dna tokenize` work (read, tokenize, soft-mask, sha256,
  HDF5 write, atomic rename).

Once, the straightforward way: Biopython `SeqIO.parse` and a per-base dict lookup into a uint8
array, written to HDF5 uncompressed (it skips the soft-mask: a conservative ratio). Its ids are
checked equal to the store's. Then random 4 kbp windows per second from the store, one process:
on chr20 (no soft-masked base, so the mask is not read), and on a copy of chr20 with a mixed
soft-mask (half its bases lowercased in runs of 50-2000), where every window reads the mask.
Medians over the repeats. Wall-clock and CPU seconds (all threads of the process) are both
reported, with the load average, because the machine may be shared: on a busy machine the
wall-clock numbers fall and the overlap of reading with tokenizing is lost, while CPU seconds
hold.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import pysam
import pysam.version
from Bio import SeqIO
from common import SHARED_DATA, append_section, markdown_table

from pipeline.io.sequences import SEGMENT_BASES
from pipeline.tokenstore import TokenStore, write_token_store

WINDOW = 4096
NAIVE_TABLE = {c: i for i, c in enumerate("ACGTN", start=5)} | dict.fromkeys("RYSWKMBDHV", 9)
NAIVE_TABLE |= {c.lower(): i for c, i in NAIVE_TABLE.items()}


def read_fastx(path: Path) -> int:
    return sum(len(record.sequence) for record in pysam.FastxFile(str(path)))


def read_fasta_segments(path: Path) -> int:
    total = 0
    with pysam.FastaFile(str(path)) as fasta:
        for name, length in zip(fasta.references, fasta.lengths, strict=True):
            for start in range(0, length, SEGMENT_BASES):
                total += len(fasta.fetch(name, start, min(start + SEGMENT_BASES, length)))
    return total


def naive_tokenize(path: Path, out: Path) -> None:
    """Biopython parse, one dict lookup per base, one uncompressed dataset per record."""
    with gzip.open(path, "rt") as handle, h5py.File(out, "w") as h5:
        for record in SeqIO.parse(handle, "fasta"):
            seq = str(record.seq)
            ids = np.fromiter((NAIVE_TABLE[c] for c in seq), dtype=np.uint8, count=len(seq))
            h5.create_dataset(record.id, data=ids)


def timed(step: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def windows_per_second(
    store_path: Path, count: int, strands: str, seed: int
) -> tuple[float, float]:
    """Random windows per wall-clock second and per CPU second."""
    rng = np.random.default_rng(seed)
    with TokenStore(store_path) as store:
        lengths = np.array([c.length for c in store.contigs])
        contigs = rng.choice(len(lengths), size=count, p=lengths / lengths.sum())
        starts = (rng.random(count) * (lengths[contigs] - WINDOW)).astype(np.int64)
        chosen = rng.choice(list(strands), size=count)
        store.window(0, 0, WINDOW)  # open the file and dataset handles outside the timing
        wall, cpu = timed(lambda: _read_windows(store, contigs, starts, chosen))
        return count / wall, count / cpu


def _read_windows(
    store: TokenStore, contigs: np.ndarray, starts: np.ndarray, strands: np.ndarray
) -> None:
    for contig, begin, strand in zip(contigs.tolist(), starts.tolist(), strands, strict=True):
        store.window(contig, begin, WINDOW, strand)


def mixed_case_copy(path: Path, out: Path, seed: int) -> None:
    """chr20 with about half of its bases lowercased in runs, as plain FASTA."""
    name, sequence = next((r.name, r.sequence) for r in pysam.FastxFile(str(path)))
    bases = np.frombuffer(sequence.upper().encode(), dtype=np.uint8).copy()
    rng = np.random.default_rng(seed)
    position = 0
    while position < bases.size:
        run = int(rng.integers(50, 2000))
        if rng.random() < 0.5:
            bases[position : position + run] |= 0x20  # ASCII lowercase
        position += run
    lines = [bases[i : i + 60].tobytes() for i in range(0, bases.size, 60)]
    out.write_bytes(b">" + name.encode() + b"\n" + b"\n".join(lines) + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genome",
        type=Path,
        default=SHARED_DATA / "genomes" / "human_grch37_chr20.fa.gz",
        help="bgzip FASTA with .fai/.gzi",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--windows", type=int, default=20_000, help="random windows per test")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow Biopython run")
    parser.add_argument("--no-doc", action="store_true", help="do not append docs/benchmarks.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = tmp_path / "chr20.h5"
        times: dict[str, list[tuple[float, float]]] = {"fastx": [], "fasta": [], "tokenize": []}
        bases = read_fastx(args.genome)
        for _ in range(args.repeats):
            times["fastx"].append(timed(lambda: read_fastx(args.genome)))
            times["fasta"].append(timed(lambda: read_fasta_segments(args.genome)))
            times["tokenize"].append(timed(lambda: write_token_store([args.genome], store)))
        median = {k: _medians(v) for k, v in times.items()}
        naive = None
        if not args.skip_naive:
            naive = timed(lambda: naive_tokenize(args.genome, tmp_path / "naive.h5"))
            with h5py.File(tmp_path / "naive.h5") as h5, TokenStore(store) as tokens:
                assert np.array_equal(h5[tokens.contigs[0].name][:], tokens.contig_tokens(0))
        mixed = tmp_path / "mixed.fa"
        mixed_case_copy(args.genome, mixed, seed=0)
        write_token_store([mixed], tmp_path / "mixed.h5")
        rates = [
            ("chr20 (no soft-masked base)", "+", windows_per_second(store, args.windows, "+", 1)),
            (
                "chr20 (no soft-masked base)",
                "+ and -",
                windows_per_second(store, args.windows, "+-", 2),
            ),
            (
                "chr20, half soft-masked",
                "+ and -",
                windows_per_second(tmp_path / "mixed.h5", args.windows, "+-", 3),
            ),
        ]
        store_mb = store.stat().st_size / 1e6
    load = os.getloadavg()

    base = median["fastx"]
    rows = [
        _row("pysam FastxFile read (decompress + parse)", median["fastx"], bases, base),
        _row("pysam FastaFile fetch, 4 Mbp segments", median["fasta"], bases, base),
        _row("titans-dna tokenize (write_token_store)", median["tokenize"], bases, base),
    ]
    if naive is not None:
        rows.append(_row("Biopython SeqIO + per-base dict lookup", naive, bases, base))
    ratios = (
        f"tokenize / FastxFile read: {median['tokenize'][0] / base[0]:.2f} wall-clock, "
        f"{median['tokenize'][1] / base[1]:.2f} CPU (target <= 2); tokenize / FastaFile read: "
        f"{median['tokenize'][0] / median['fasta'][0]:.2f} wall-clock"
    )
    if naive is not None:
        ratios += (
            f"; Biopython + dict / tokenize: {naive[0] / median['tokenize'][0]:.1f} wall-clock"
        )
    window_rows = [
        {
            "store": name,
            "strands": strands,
            "windows / wall s": f"{wall:,.0f}",
            "windows / CPU s": f"{cpu:,.0f}",
        }
        for name, strands, (wall, cpu) in rates
    ]
    body = "\n\n".join(
        [
            f"Input: {args.genome.name}, {bases:,} bases; store {store_mb:.1f} MB; medians of "
            f"{args.repeats} interleaved repeats; load average during the run "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min). pysam "
            f"{pysam.__version__} (htslib {pysam.version.__htslib_version__}), h5py "
            f"{version('h5py')} (HDF5 {h5py.version.hdf5_version}), Biopython "
            f"{version('biopython')}.",
            markdown_table(
                rows, ["method", "wall s", "CPU s", "Mbp/s", "wall / read", "CPU / read"]
            ),
            "(read = the pysam FastxFile read; CPU s counts every thread of the process)",
            ratios + ".",
            f"Random {WINDOW} bp windows, one process, {args.windows:,} per row "
            "(HDF5's default 1 MiB chunk cache per dataset):",
            markdown_table(
                window_rows, ["store", "strands", "windows / wall s", "windows / CPU s"]
            ),
        ]
    )
    print(body)
    if not args.no_doc:
        append_section("Tokenizing and the token store", body)
    return 0


def _medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def _row(
    method: str, seconds: tuple[float, float], bases: int, baseline: tuple[float, float]
) -> dict[str, object]:
    wall, cpu = seconds
    return {
        "method": method,
        "wall s": f"{wall:.3f}",
        "CPU s": f"{cpu:.3f}",
        "Mbp/s": f"{bases / wall / 1e6:.1f}",
        "wall / read": f"{wall / baseline[0]:.2f}",
        "CPU / read": f"{cpu / baseline[1]:.2f}",
    }


if __name__ == "__main__":
    sys.exit(main())
