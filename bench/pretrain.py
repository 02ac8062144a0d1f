"""Pretraining benchmark: a Titans DNA model against the best order-k Markov model, and memory at
long context.

Part 1 (held-out bits per base). The tiny configuration (config/pretrain/tiny_cpu.yaml)
pretrains on human chromosome 20 (`--corpus chr20`, 63 Mbp, the corpus of the human and mouse
tasks) or on four bacterial genomes (`--corpus bacteria`: E. coli K-12, H. pylori G27,
S. aureus N315, V. cholerae O395; 13.2 Mbp) for at most `--minutes` of wall time. A 15-step
calibration run measures the training speed first, so that the learning-rate schedule ends when
the budget does. Held out: the last 5% of every contig. On exactly the bases the model is scored
on (each held-out window of `train.context` + 1 tokens, every base after the first), order-k
Markov models for k = 0..12 fitted on the same training part (both strands, as the model sees
them) are scored with interpolated modified Kneser-Ney and with add-one smoothing; the best
(smoothing, k) on the held-out part is the baseline (chosen on the data it is scored on, which
favours the baseline).

Part 2 (memory at long context). A few training steps (batch 1, no activation checkpointing)
at 8k, 16k, 32k and 64k tokens, each in a fresh process; its peak resident memory (CPU) or peak
allocated CUDA memory is recorded, and the growth per token is the slope between contexts.
`--device cuda --context 1048576` measures one context on a GPU instead (bfloat16 autocast and
activation checkpointing per block).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SHARED_DATA, append_section, markdown_table, process_memory_mib

from pipeline.allocator import keep_freed_memory

CORPORA = {
    "chr20": ("human_grch37_chr20",),
    "bacteria": ("ecoli_k12_mg1655", "hpylori_g27", "saureus_n315", "vcholerae_o395"),
}
CONFIG = REPO / "config" / "pretrain" / "tiny_cpu.yaml"
LONG_CONTEXTS = (8192, 16384, 32768, 65536)
CALIBRATION_STEPS = 15

log = logging.getLogger("pipeline")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="chr20", help="genomes")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="configuration override"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1-minute check on a short held-out part; no docs"
    )
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench" / "pretrain")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (long-context part only)")
    parser.add_argument(
        "--context", type=int, nargs="+", help="long-context sizes (default 8k..64k on the CPU)"
    )
    parser.add_argument(
        "--threads", type=int, choices=(1, 2), help="CPU threads (default: the faster of 1 and 2)"
    )
    parser.add_argument("--skip-train", action="store_true", help="only the long-context part")
    parser.add_argument("--skip-long", action="store_true", help="only the Markov comparison")
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--child-long", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def corpus_store(out: Path, corpus: str) -> Path:
    """One token store of the corpus's genomes (built once)."""
    from pipeline.tokenstore import write_token_store

    store = out / "tokens" / f"{corpus}.h5"
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        genomes = [SHARED_DATA / "genomes" / f"{g}.fa.gz" for g in CORPORA[corpus]]
        write_token_store(genomes, store)
    return store


# ----- part 1: Titans against Markov ------------------------------------------------------------


def train_config(store: Path, sets: list[str]):
    from pipeline.pretrain.config import load_config

    return load_config(CONFIG, ["eval.markov_max_order=0", *sets], [str(store)])


def calibrate(store: Path, out: Path, quick_sets: list[str], threads: int) -> float:
    """Steady training steps per second with `threads` CPU threads (no evaluation, no
    checkpoint)."""
    import torch

    from pipeline.pretrain.loop import run_pretraining

    torch.set_num_threads(threads)
    folder = out / "calibration"
    shutil.rmtree(folder, ignore_errors=True)
    sets = [
        *quick_sets,
        f"train.max_steps={CALIBRATION_STEPS}",
        "train.log_every=5",
        "eval.every=1000",
        "eval.final_max_tokens=1024",
        "checkpoint.every=1000",
    ]
    run_pretraining(train_config(store, sets), folder, resume="never", device="cpu")
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(folder)
    tokens_per_step = rows[-1]["tokens"] / rows[-1]["step"]
    return rows[-1]["tokens_per_s"] / tokens_per_step  # the last interval: warm


def train_and_compare(
    store: Path, out: Path, minutes: float, quick: bool, overrides: list[str], threads: int | None
) -> dict:
    import torch

    from pipeline.pretrain.data import Corpus
    from pipeline.pretrain.loop import run_pretraining
    from pipeline.pretrain.markov import MarkovCounts, evaluate_markov

    quick_sets = ["eval.max_tokens=16384", "eval.final_max_tokens=131072"] if quick else []
    quick_sets += overrides
    # A shared machine can make two threads slower than one: measure both, keep the faster.
    speeds = {n: calibrate(store, out, quick_sets, n) for n in ((threads,) if threads else (1, 2))}
    threads = max(speeds, key=speeds.get)
    steps_per_s = speeds[threads]
    torch.set_num_threads(threads)
    # Evaluations and checkpoints take a few percent of the time; the budget stops the run anyway.
    max_steps = max(int(0.93 * minutes * 60 * steps_per_s), 20)
    sets = [*quick_sets, f"train.max_steps={max_steps}", f"train.max_minutes={minutes}"]
    config = train_config(store, sets)
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    started = time.monotonic()
    summary = run_pretraining(config, run, resume="never", device="cpu")
    train_wall = time.monotonic() - started

    corpus = Corpus(config.data, seed=config.seed)
    windows = corpus.val_windows(config.train.context, config.eval.final_max_tokens)
    started = time.monotonic()
    counts = MarkovCounts(
        (corpus.read_piece(p) for p in corpus.train_pieces), 12, both_strands=True
    )
    ids = [corpus.read_piece(w) for w in windows]
    markov = {s: evaluate_markov(counts, ids, s) for s in ("kneser_ney", "add_one")}
    markov_wall = time.monotonic() - started
    corpus.close()
    if markov["kneser_ney"].scored_bases != summary["val_scored_bases"]:
        raise RuntimeError("the Markov models and the network were scored on different bases")
    return {
        "summary": summary,
        "markov": markov,
        "config": config,
        "train_wall": train_wall,
        "markov_wall": markov_wall,
        "steps_per_s": steps_per_s,
        "threads": threads,
    }


def comparison_table(result: dict) -> str:
    summary, markov, config = result["summary"], result["markov"], result["config"]
    best = min(markov.values(), key=lambda m: m.best_bits_per_base)
    model = config.model_config()
    rows = [
        {
            "model": f"Titans {model.variant.upper()} (tiny: d_model {model.d_model}, "
            f"{model.n_layers} layers, {summary['parameters']:,} parameters)",
            "held-out bits/base": f"{summary['val_bits_per_base']:.4f}",
            "ratio to best Markov": f"{summary['val_bits_per_base'] / best.best_bits_per_base:.4f}",
            "training": f"{summary['steps']} steps, {summary['tokens'] / 1e6:.1f} M tokens, "
            f"{summary['train_seconds'] / 60:.1f} min; {summary['tokens_per_s']:,.0f} tokens/s",
        }
    ]
    for name, label in (("kneser_ney", "interpolated Kneser-Ney"), ("add_one", "add-one")):
        m = markov[name]
        rows.append(
            {
                "model": f"Markov order {m.best_order} ({label}, best of k = 0..12)",
                "held-out bits/base": f"{m.best_bits_per_base:.4f}",
                "ratio to best Markov": f"{m.best_bits_per_base / best.best_bits_per_base:.4f}",
                "training": f"{m.train_bases / 1e6:.1f} M bases counted (both strands)",
            }
        )
    columns = ["model", "held-out bits/base", "ratio to best Markov", "training"]
    orders = ", ".join(f"{k}: {v:.4f}" for k, v in markov["kneser_ney"].bits_per_order.items())
    t = config.train
    text = markdown_table(rows, columns)
    text += (
        f"\n\nHeld-out: the last {config.data.val_fraction:.0%} of every contig, "
        f"{summary['val_scored_bases']:,} bases scored by every model (windows of "
        f"{t.context} + 1 tokens). Training: context {t.context}, batch {t.batch_size}, "
        f"lr {config.optim.lr:g}, budget {t.max_minutes:g} min ({result['train_wall'] / 60:.1f} "
        f"min wall incl. evaluations and checkpoints; {result['threads']} CPU thread(s), "
        f"calibrated {result['steps_per_s']:.2f} steps/s). "
        f"Markov counting and scoring: {result['markov_wall']:.0f} s. "
        f"Kneser-Ney bits/base by order: {orders}."
    )
    return text


# ----- part 2: memory at long context ----------------------------------------------------------


def long_context_child(store: Path, context: int, device: str, out: Path) -> dict:
    """Runs in a fresh process: a few training steps at `context`; peak memory."""
    import torch

    from pipeline.errors import PipelineError
    from pipeline.pretrain.config import load_config
    from pipeline.pretrain.loop import run_pretraining

    cuda = device.startswith("cuda")
    sets = [
        f"train.context={context}",
        "train.batch_size=1",
        "train.max_steps=3",
        "train.log_every=1",
        "optim.warmup_steps=1",
        "optim.lr=1e-4",  # memory is measured, not learning: a small, stable step
        "eval.every=1000",
        f"eval.max_tokens={context}",
        f"eval.final_max_tokens={context}",
        "eval.batch_size=1",
        "eval.markov_max_order=0",
        "checkpoint.every=1000",
        f"train.activation_checkpointing={'true' if cuda else 'false'}",
    ]
    config = load_config(CONFIG, sets, [str(store)])
    baseline_mb = process_memory_mib("VmRSS")
    folder = out / f"long-{context}"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        run_pretraining(config, folder, resume="never", device=device)
        problem = None
    except PipelineError as err:  # e.g. non-finite gradients: the step's memory is still known
        problem = str(err)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(folder)
    timed = [context / r["tokens_per_s"] for r in rows if r["tokens_per_s"]]
    result = {
        "context": context,
        "device": device,
        "peak_rss_mb": process_memory_mib(),
        "baseline_rss_mb": baseline_mb,
        "step_s": min(timed) if timed else None,
        "problem": problem,
    }
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def long_context(store: Path, out: Path, contexts: list[int], device: str) -> list[dict]:
    results = []
    for context in contexts:
        command = [sys.executable, __file__, "--child-long", str(context), "--store", str(store)]
        command += ["--device", device, "--out", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"context {context} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        log.info("context %d: %s", context, results[-1])
    return results


def memory_table(results: list[dict]) -> str:
    key = "peak_cuda_mb" if "peak_cuda_mb" in results[0] else "peak_rss_mb"
    first = results[0]
    rows = []
    for r in results:
        slope = (
            (r[key] - first[key]) * 2**20 / (r["context"] - first["context"])
            if r is not first
            else None
        )
        rows.append(
            {
                "context (tokens)": f"{r['context']:,}",
                "peak memory (MiB)": f"{r[key]:,.0f}",
                "peak bytes per token": f"{r[key] * 2**20 / r['context']:,.0f}",
                "growth per token since the smallest context (bytes)": "-"
                if slope is None
                else f"{slope:,.0f}",
                "training step (s)": "-" if r["step_s"] is None else f"{r['step_s']:.2f}",
                "gradients": "finite" if r["problem"] is None else "non-finite",
            }
        )
    columns = list(rows[0])
    what = "peak allocated CUDA memory" if key == "peak_cuda_mb" else "peak resident memory (RSS)"
    return (
        markdown_table(rows, columns)
        + f"\n\nMemory is the process's {what} over up to 3 training steps (batch 1) and one "
        f"held-out forward pass at that context, each context in a fresh process (baseline RSS "
        f"after imports: {first['baseline_rss_mb']:.0f} MiB); the tiny configuration. A run "
        "stops at the first step whose gradients are not finite, after that step's forward and "
        "backward pass."
    )


def main() -> int:
    args = parse_args()
    keep_freed_memory()  # as `titans-dna pretrain` does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child_long:
        result = long_context_child(args.store, args.child_long, args.device, args.out)
        print(json.dumps(result))
        return 0
    store = corpus_store(args.out, args.corpus)
    sections = []
    if not args.skip_train:
        if args.device != "cpu":
            raise SystemExit("the Markov comparison is a CPU benchmark; use --skip-train")
        minutes = 1.0 if args.quick else args.minutes
        result = train_and_compare(store, args.out, minutes, args.quick, args.set, args.threads)
        sections.append(
            "### Held-out bits per base: Titans against order-k Markov\n\n"
            + comparison_table(result)
        )
    if not args.skip_long:
        contexts = args.context or (list(LONG_CONTEXTS[:2]) if args.quick else list(LONG_CONTEXTS))
        results = long_context(store, args.out, contexts, args.device)
        text = memory_table(results)
        if args.device == "cpu":
            text += (
                " The 1,048,576-token case (`--device cuda --context 1048576`) needs a GPU; "
                "none was available for this run."
            )
        sections.append("### Memory at long context\n\n" + text)
    body = "\n\n".join(sections)
    print(body)
    if not (args.quick or args.no_append):
        append_section(f"Pretraining ({args.corpus})", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
