"""GUE fine-tuning benchmark: test MCC / AUROC under a wall-clock budget, scratch vs pretrained.

For each task, `titans-dna finetune` runs in a fresh process with `--max-minutes BUDGET` (the
full protocol: the five GUE tasks, 20 minutes each, on the CPU, three seeds), from scratch (tiny
preset) and from the pretrained checkpoint when one exists, once per seed; a row gives the mean
and the sample standard deviation over the seeds; `titans-dna evaluate` linear-probes the
pretrained model's frozen mean-pooled embeddings. Reference columns: the 3-6-mer logistic
regression baseline measured on the same splits (data README) and fine-tuned DNABERT-2 as
published. Prints a markdown table and appends it to docs/benchmarks.md under
"## Fine-tuning on GUE".

    python bench/finetune.py                               # full protocol
    python bench/finetune.py --tasks prom_300_tata,mouse_0 --minutes 4 --seeds 1
    python bench/finetune.py --jobs 2 --threads 1           # two runs at once, one core each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from common import REPO, SHARED_DATA, append_section, markdown_table

from pipeline.report.baselines import reference_for
from pipeline.report.markup import mean_and_spread

TASKS = ("prom_core_all", "prom_300_tata", "tf_0", "tf_1", "mouse_0")
# Where bench/pretrain.py leaves its model (first match wins).
PRETRAINED_CANDIDATES = (
    REPO / "results" / "bench" / "pretrain" / "model",
    REPO / "results" / "bench" / "pretrain" / "run" / "model",
)
# DNABERT-2 values checked against a second published copy of the GUE table; the others are
# quoted from the paper's table without that second check.
DNABERT2_CHECKED = {"prom_core_all", "tf_0", "tf_1"}
COLUMNS = [
    "task",
    "model",
    "seeds",
    "test MCC",
    "test AUROC",
    "test MCC at arg-max",
    "dev MCC",
    "threshold",
    "strands",
    "best step",
    "epochs",
    "wall s",
    "dev scoring %",
    "probe AUROC",
    "probe MCC",
    "k-mer LR MCC",
    "k-mer LR AUROC",
    "DNABERT-2 MCC",
]


def main() -> int:
    args = parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    pretrained = resolve_pretrained(args.pretrained)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {
        (task, label, seed): partial(
            run_finetune, Path(args.data) / task, checkpoint, sets, seed,
            out / f"{task}-{label.replace(' ', '-')}-seed{seed}", args,
        )
        for task in tasks
        for label, checkpoint, sets in model_rows(pretrained, args)
        for seed in range(args.seeds)
    }  # fmt: skip
    if pretrained is not None and not args.no_probe:
        for task in tasks:
            runs[task, "probe", 0] = partial(
                run_probe, Path(args.data) / task, pretrained, out / f"{task}-probe.json", args
            )
    # Longest first, so that concurrent jobs end together.
    order = sorted(runs, key=lambda key: key[1] == "probe")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(zip(order, pool.map(lambda key: runs[key](), order), strict=True))
    rows, labels = [], [label for label, _, _ in model_rows(pretrained, args)]
    for task in tasks:
        task_rows = [
            row(task, label, [m for (t, lb, _), m in results.items() if (t, lb) == (task, label)])
            for label in labels
        ]
        probe = results.get((task, "probe", 0))
        if probe is not None:
            task_rows[-1]["probe AUROC"] = probe["test"]["auroc"]
            task_rows[-1]["probe MCC"] = probe["test"]["mcc"]
        rows.extend(task_rows)
    table = markdown_table(rows, COLUMNS)
    print(table)
    if not args.no_append:
        append_section("Fine-tuning on GUE", describe(args, pretrained) + "\n\n" + table)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated GUE tasks")
    parser.add_argument("--minutes", type=float, default=20.0, help="budget per fine-tune run")
    parser.add_argument(
        "--seeds", type=int, default=3, help="runs per task and model: seeds 0..N-1"
    )
    parser.add_argument(
        "--pretrained",
        default="auto",
        help="pretrained checkpoint; 'auto' uses the pretraining benchmark's model "
        "(results/bench/pretrain/[run/]model) when present; "
        "'none' skips the pretrained rows",
    )
    parser.add_argument("--data", default=str(SHARED_DATA / "benchmarks" / "gue"), help="GUE root")
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "finetune"))
    parser.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--preset", default="tiny", help="model size of the from-scratch rows")
    parser.add_argument(
        "--scratch-variants",
        default="preset",
        help="from-scratch rows: comma-separated Titans variants (mac, mag, mal, lmm) of the "
        "preset, or 'preset' for the preset as it is",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument(
        "--threads", type=int, help="CPU threads per run (OMP_NUM_THREADS); default: torch's"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once (each with --threads threads)"
    )
    parser.add_argument(
        "--tune-threshold",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="finetune --tune-threshold: test MCC at the dev-chosen threshold, arg-max beside it",
    )
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    parser.add_argument("--no-append", action="store_true", help="do not touch docs/benchmarks.md")
    return parser.parse_args()


def resolve_pretrained(choice: str) -> Path | None:
    if choice == "none":
        return None
    if choice == "auto":
        found = [p for p in PRETRAINED_CANDIDATES if (p / "config.json").is_file()]
        return found[0] if found else None
    return Path(choice)


def model_rows(
    pretrained: Path | None, args: argparse.Namespace
) -> list[tuple[str, str, list[str]]]:
    """(label, checkpoint, --set overrides) per fine-tune run of a task."""
    rows = []
    for variant in args.scratch_variants.split(","):
        if variant == "preset":
            rows.append((f"scratch {args.preset}", "none", []))
        elif variant:
            rows.append((f"scratch {args.preset} {variant}", "none", [f"variant={variant}"]))
    if pretrained is not None:
        rows.append(("pretrained", str(pretrained), []))
    return rows


def run_finetune(
    task: Path, checkpoint: str, sets: list[str], seed: int, out: Path, args: argparse.Namespace
) -> dict:
    command = [
        sys.executable, "-m", "pipeline.cli", "finetune",
        "--task", str(task), "--checkpoint", checkpoint, "-o", str(out),
        "--max-minutes", str(args.minutes), "--epochs", "1000", "--patience", "6",
        "--batch-size", str(args.batch_size), "--lr", str(args.lr),
        "--preset", args.preset, "--device", args.device, "--seed", str(seed),
    ]  # fmt: skip
    if args.tune_threshold:
        command.append("--tune-threshold")
    for item in sets:
        command += ["--set", item]
    _run(command, args.threads, out.with_name(out.name + ".log"))
    return json.loads((out / "metrics.json").read_text())


def run_probe(task: Path, checkpoint: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "-m", "pipeline.cli", "evaluate", "--task", str(task),
        "--checkpoint", str(checkpoint), "-o", str(out), "--device", args.device,
    ]  # fmt: skip
    _run(command, args.threads, out.with_suffix(".log"))
    return json.loads(out.read_text())


def row(task: str, label: str, runs: list[dict]) -> dict:
    """One table row from the metrics of a task's runs (one per seed): mean ± standard deviation
    of the scores, the mean of the rest."""

    def values(get) -> list[float]:
        return [v for v in (get(m) for m in runs) if v is not None]

    def test_score(key: str):
        return lambda m: (m["test"] or {}).get(key)

    def threshold_summary(m: dict) -> dict:
        return m.get("decision_threshold") or {}

    reference = reference_for(runs[0].get("task_files"))
    kmer_mcc, kmer_auroc = (reference.kmer_mcc, reference.kmer_auroc) if reference else (None, None)
    dnabert = reference.dnabert2_mcc if reference else None
    strands = {"both" if m["options"]["rc_average"] else "forward" for m in runs}
    # without a threshold (more than two classes, or turned off) the test MCC is at arg-max
    argmax = values(lambda m: threshold_summary(m).get("test_mcc_argmax", test_score("mcc")(m)))
    return {
        "task": task,
        "model": label,
        "seeds": len(runs),
        "test MCC": mean_and_spread(values(test_score("mcc"))),
        "test AUROC": mean_and_spread(values(test_score("auroc"))),
        "test MCC at arg-max": mean_and_spread(argmax),
        "dev MCC": mean_and_spread(values(lambda m: m["dev"]["mcc"])),
        "threshold": mean_and_spread(values(lambda m: threshold_summary(m).get("threshold"))),
        "strands": "/".join(sorted(strands)),
        "best step": mean(values(lambda m: m["best_step"])),
        "epochs": mean(values(lambda m: m["epochs_completed"])),
        "wall s": mean(values(lambda m: m["wall_seconds"])),
        "dev scoring %": mean(values(scoring_share)),
        "k-mer LR MCC": kmer_mcc,
        "k-mer LR AUROC": kmer_auroc,
        "DNABERT-2 MCC": None
        if dnabert is None
        else f"{dnabert:.3f}" + ("" if task in DNABERT2_CHECKED else " †"),
    }


def scoring_share(metrics: dict) -> float | None:
    """Per cent of the run's wall time spent scoring dev during training."""
    scoring = metrics.get("dev_scoring_seconds")
    return None if scoring is None else 100 * scoring / metrics["wall_seconds"]


def mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def describe(args: argparse.Namespace, pretrained: Path | None) -> str:
    scope = (
        "full protocol"
        if args.minutes >= 20 and len(args.tasks.split(",")) == 5 and args.seeds >= 3
        else (
            "reduced run (fewer tasks, seeds or minutes than the full protocol: five tasks, "
            "20 minutes each, three seeds)"
        )
    )
    return (
        f"Budget {args.minutes:g} min per fine-tune run ({scope}), {args.seeds} seed(s) per row "
        "(mean ± sample standard deviation); "
        + (
            f"from scratch: the {args.preset} preset ({args.scratch_variants.replace(',', ', ')}), "
            if args.scratch_variants
            else "no from-scratch rows, "
        )
        + f"{args.threads or 'default'} CPU thread(s) per run, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
        + (f"; pretrained rows from `{pretrained}`" if pretrained else "; no pretrained checkpoint")
        + f"; batch {args.batch_size}, peak lr {args.lr:g}, cosine decay over the budget, "
        + "reverse-complement augmentation and strand-averaged scoring unless a linear probe "
        "on train finds the labels oriented, a linear-probe head on the frozen backbone as the "
        "first candidate, model selected on dev MCC, "
        + (
            "for two classes the decision threshold that maximises the selected model's dev MCC "
            "(test MCC at arg-max beside it), "
            if args.tune_threshold
            else "arg-max predictions, "
        )
        + "test scored once. Probe: logistic "
        "regression on frozen mean-pooled embeddings of the pretrained model (C by 5-fold CV "
        "on train+dev). k-mer LR: 3-6-mer counts + logistic regression (C=0.1) on the same "
        "splits, from the data README. "
        "DNABERT-2: fine-tuned 117M model, test MCC published in Zhou et al., ICLR 2024 "
        "(† not re-checked against a second copy of the table)."
    )


def _run(command: list[str], threads: int | None, log_path: Path) -> None:
    """Run one CLI command, its output into log_path; a failure shows the log's end."""
    start = time.monotonic()
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log_path.read_text().splitlines()[-20:]
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(tail))
    print(f"  done in {time.monotonic() - start:.0f} s: {log_path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
