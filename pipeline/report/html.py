"""The run report: one self-contained HTML file (inline CSS, figures as base64 PNG).

Sections: pretraining curves and summary, the fine-tuning metrics beside reference numbers,
a PCA map of window embeddings along the genome, the long-context measurements (context curve,
planted-repeat recall, natural repeats), and provenance (configuration, package versions, sha256
of inputs and of the pretrained checkpoint).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
import math
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.atomic import atomic_file, check_output_parent
from pipeline.errors import PipelineError, input_error
from pipeline.manifest import sha256_file
from pipeline.report.embeddings import embedding_section
from pipeline.report.figures import (
    LONG_CONTEXT_LABELS,
    figure_png,
    long_context_figure,
    pretraining_curves,
    variant_figure,
)
from pipeline.report.finetune import finetune_section
from pipeline.report.markup import fmt, key_value_table, metrics_table, page, read_json
from pipeline.report.runinfo import run_information_section

# Readable names of the fields of pretrain's summary.json.
SUMMARY_LABELS = {
    "steps": "optimizer steps",
    "tokens": "training tokens",
    "val_loss": "held-out loss (nats per base)",
    "val_bits_per_base": "held-out bits per base",
    "val_scored_bases": "held-out bases scored",
    "tokens_per_s": "training speed (tokens/s)",
    "train_seconds": "training time (s)",
    "wall_s": "wall time (s)",
    "parameters": "parameters",
    "train_bases": "training bases",
    "val_bases": "held-out bases",
    "world_size": "processes",
    "device": "device",
    "stopped_early": "stopped by the time budget",
    "beats_markov": "beats the best Markov baseline",
}
VERSIONED_PACKAGES = ("titans-dna", "torch", "numpy", "h5py", "matplotlib", "snakemake", "triton")


@dataclass
class ReportInputs:
    """What a report is built from; every field is optional, but not all of them at once."""

    pretrain: Path | None = None
    finetune: list[Path] = field(default_factory=list)
    finetune_seeds: list[Path] = field(default_factory=list)
    probes: list[Path] = field(default_factory=list)
    embeddings: list[Path] = field(default_factory=list)
    long_context: Path | None = None
    variants: list[Path] = field(default_factory=list)
    config: Path | None = None
    benchmarks: Path | None = None
    inputs: list[Path] = field(default_factory=list)
    title: str = "titans-dna run report"


def write_report(spec: ReportInputs, out: str | Path) -> None:
    """Check every input exists, build the HTML, write it atomically to `out`."""
    out = check_output_parent(out)
    _check_inputs(spec)
    sections = [
        _pretrain_section(spec.pretrain) if spec.pretrain else "",
        finetune_section(spec.finetune, spec.probes, spec.finetune_seeds) if spec.finetune else "",
        "".join(embedding_section(path) for path in spec.embeddings),
        _long_context_section(spec.long_context) if spec.long_context else "",
        "".join(_variant_section(path) for path in spec.variants),
        run_information_section(spec.benchmarks),
        _provenance_section(spec),
    ]
    document = page(spec.title, "".join(sections))
    with atomic_file(out) as tmp:
        tmp.write_text(document, encoding="utf-8")


def _check_inputs(spec: ReportInputs) -> None:
    if not (spec.pretrain or spec.finetune or spec.embeddings or spec.long_context
            or spec.variants):  # fmt: skip
        raise PipelineError(
            "nothing to report: give --pretrain, --finetune, --embeddings, --long-context or "
            "--variants"
        )
    if spec.pretrain is not None:
        metrics_file(spec.pretrain)
    for folder in [*spec.finetune, *spec.finetune_seeds]:
        _require(folder / "metrics.json", "missing (expected the output of titans-dna finetune)")
    optional = [p for p in (spec.config, spec.long_context) if p is not None]
    for path in [*spec.embeddings, *spec.probes, *spec.variants, *spec.inputs, *optional]:
        _require(path, "no such file")


def _require(path: Path, problem: str) -> None:
    if not path.is_file():
        raise input_error(path, problem)


# ---------------------------------------------------------------- pretraining


def metrics_file(folder: Path) -> Path:
    """The pretraining metrics table in `folder`: metrics.csv, else metrics.jsonl."""
    for name in ("metrics.csv", "metrics.jsonl"):
        if (folder / name).is_file():
            return folder / name
    raise input_error(
        folder / "metrics.csv", "missing (expected the output of titans-dna pretrain)"
    )


def read_metrics(path: Path) -> list[dict]:
    """Metrics rows as dicts of floats (None where a column is empty); needs a "step" column."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            raw = [json.loads(line) for line in handle if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as handle:
            raw = list(csv.DictReader(handle))
    rows = [{k: _number(v) for k, v in row.items() if k} for row in raw]
    rows = [row for row in rows if row.get("step") is not None]
    if not rows:
        raise input_error(path, "no metrics rows with a step")
    return rows


def _number(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _pretrain_section(folder: Path) -> str:
    rows = read_metrics(metrics_file(folder))
    summary = read_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
    markov = summary.get("markov") if isinstance(summary.get("markov"), dict) else {}
    baselines = {}
    if isinstance(markov.get("bits_per_base"), int | float):
        baselines[f"order-{markov.get('best_order', '?')} Markov"] = float(markov["bits_per_base"])
    image = figure_png(pretraining_curves(rows, baselines))
    facts = {"output folder": str(folder), "last logged step": f"{rows[-1]['step']:.0f}"}
    facts.update(
        {SUMMARY_LABELS.get(key, key.replace("_", " ")): fmt(value)
         for key, value in summary.items() if not isinstance(value, dict)}
    )  # fmt: skip
    facts.update({f"{label} baseline bits/base": fmt(bits) for label, bits in baselines.items()})
    by_genome = summary.get("val_bits_per_base_by_genome") or {}
    by_order = markov.get("bits_per_order") or {}
    parts = [
        "<h2>Pretraining</h2>",
        f'<img alt="pretraining curves" src="data:image/png;base64,{image}">',
        key_value_table(facts),
    ]
    if by_genome:
        parts.append("<h3>Held-out bits per base by genome</h3>")
        parts.append(key_value_table({name: fmt(bits) for name, bits in by_genome.items()}))
    if by_order:
        parts.append("<h3>Markov baseline by order</h3>")
        parts.append(metrics_table(_markov_rows(by_order, markov.get("best_order"))))
    return "".join(parts)


def _markov_rows(by_order: dict, best: object) -> list[dict]:
    rows = []
    for k, bits in sorted(by_order.items(), key=lambda item: int(item[0])):
        rows.append({"order k": int(k), "held-out bits/base": bits, "best": str(k) == str(best)})
    return rows


# ---------------------------------------------------------------- long context


def _long_context_section(path: Path) -> str:
    result = read_json(path)
    if not all(isinstance(result.get(key), dict) for key in ("curve", "recall", "repeats")):
        raise input_error(path, "not the output of titans-dna long-context")
    image = figure_png(long_context_figure(result))
    rows = []
    for key, label in LONG_CONTEXT_LABELS.items():
        repeats = result["repeats"].get(key)
        if repeats:
            rows.append(
                f"<tr><td>{html.escape(label)}</td><td>{fmt(repeats['bits_at_repeats'])}</td>"
                f"<td>{fmt(repeats['bits_overall'])}</td><td>{fmt(repeats['repeat_bases'])}"
                "</td></tr>"
            )
    settings = result.get("settings", {})
    return (
        "<h2>Long context</h2>"
        f"<p>Held-out part of <code>{html.escape(str(result.get('input', '')))}</code> "
        f"({fmt(result.get('held_out_bases'))} bases). The memory-off ablation resets the "
        f"memory every {fmt(settings.get('reset_every'))} bases.</p>"
        f'<img alt="context curve and planted-repeat recall" src="data:image/png;base64,{image}">'
        "<h3>Natural repeats</h3>"
        '<table class="metrics"><tr><th>model</th><th>bits/base at distant repeats</th>'
        f"<th>bits/base overall</th><th>repeat bases</th></tr>{''.join(rows)}</table>"
        f"<p class=note>Distant repeats: bases whose preceding {fmt(settings.get('repeat_k'))} "
        "bases occurred earlier in the window, more than the reset interval back.</p>"
    )


# ---------------------------------------------------------------- variant scores


def read_variant_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(TITANS_LLR [N], INFO AF [N], NaN where absent) of the scored alleles of a scored VCF."""
    import pysam

    llr, frequency = [], []
    try:
        with pysam.VariantFile(str(path)) as reader:
            if "TITANS_LLR" not in reader.header.info:
                raise input_error(path, "not the output of titans-dna score-variants")
            has_af = "AF" in reader.header.info
            for rec in reader:
                scores = rec.info.get("TITANS_LLR") or ()
                afs = (rec.info.get("AF") if has_af else None) or (None,) * len(scores)
                for score, af in zip(scores, afs, strict=False):
                    if score is not None:
                        llr.append(score)
                        frequency.append(math.nan if af is None else af)
    except (OSError, ValueError) as error:
        raise input_error(path, f"not a readable VCF ({error})") from None
    return np.array(llr, dtype=np.float64), np.array(frequency, dtype=np.float64)


def _variant_section(path: Path) -> str:
    llr, frequency = read_variant_scores(path)
    if not len(llr):
        return f"<h2>Variant scores: {html.escape(path.name)}</h2><p>No scored alleles.</p>"
    image = figure_png(variant_figure(llr, frequency, path.name.removesuffix(".vcf.gz")))
    known = np.isfinite(frequency)
    facts = {
        "file": str(path),
        "scored alleles": f"{len(llr):,}",
        "median score (nats)": f"{np.median(llr):.3f}",
        "alleles with a negative score": f"{(llr < 0).mean():.0%}",
    }
    if known.sum() > 2:
        rho = np.corrcoef(
            np.argsort(np.argsort(llr[known])), np.argsort(np.argsort(frequency[known]))
        )
        facts["Spearman correlation with AF"] = f"{rho[0, 1]:.3f} ({known.sum()} alleles)"
    return (
        f"<h2>Variant scores: {html.escape(path.name)}</h2>"
        f'<img alt="variant scores" src="data:image/png;base64,{image}">'
        + key_value_table(facts)
        + "<p class=note>Score: log-likelihood of the alternative haplotype minus that of the "
        "reference over the alleles and the window after them, mean of both strands.</p>"
    )


# ---------------------------------------------------------------- provenance


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on ("not installed" when absent)."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _checkpoint_files(pretrain: Path | None) -> list[Path]:
    model = pretrain / "model" if pretrain else None
    if model is None or not model.is_dir():
        return []
    # hidden files are bookkeeping (e.g. Snakemake's directory timestamp), not the checkpoint
    return sorted(p for p in model.iterdir() if p.is_file() and not p.name.startswith("."))


def _provenance_section(spec: ReportInputs) -> str:
    checksums = {str(p): sha256_file(p) for p in [*spec.inputs, *_checkpoint_files(spec.pretrain)]}
    config = spec.config.read_text(encoding="utf-8") if spec.config else "(no configuration given)"
    return (
        "<h2>Provenance</h2>"
        f"<p>Written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} by titans-dna "
        f"{html.escape(__version__)}.</p>"
        "<h3>Package versions</h3>"
        + key_value_table(package_versions())
        + "<h3>sha256 of inputs and checkpoint</h3>"
        + (key_value_table(checksums, code=True) if checksums else "<p>none given</p>")
        + f"<h3>Configuration</h3><pre>{html.escape(config)}</pre>"
    )
