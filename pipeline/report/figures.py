"""Figures for the HTML report, rendered off-screen (no display needed) to base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pipeline.metrics import predicted_classes

UNIFORM_BITS_PER_BASE = 2.0  # log2(4): what a model that knows nothing about DNA scores


def figure_png(figure: Figure) -> str:
    """Render a figure to a base64 PNG string for a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pretraining_curves(rows: Sequence[dict], baselines: dict[str, float] | None = None) -> Figure:
    """Training loss and held-out bits per base against training tokens (the step where a row
    has no token count), in bits; `baselines` ({label: bits per base}) are horizontal lines
    beside the uniform 2 bits. Absent or non-finite values are skipped."""
    x_key = "tokens" if all(row.get("tokens") is not None for row in rows) else "step"
    figure = Figure(figsize=(7.5, 4.2))
    axes = figure.subplots()
    series = (
        ("train_loss", "train (weighted loss)", 1 / math.log(2), None),
        ("val_bits_per_base", "held-out", 1.0, "o"),
    )
    for key, label, scale, marker in series:
        points = [(row[x_key], row[key] * scale) for row in rows
                  if row.get(key) is not None and math.isfinite(row[key])]  # fmt: skip
        if points:
            axes.plot(*zip(*points, strict=True), marker=marker, label=label, alpha=0.8)
    axes.axhline(UNIFORM_BITS_PER_BASE, color="grey", linestyle="--", label="uniform (2 bits)")
    for (label, bits), style in zip((baselines or {}).items(), (":", "-."), strict=False):
        axes.axhline(bits, color="tab:green", linestyle=style, label=label)
    axes.set(xlabel="training tokens" if x_key == "tokens" else "step", ylabel="bits per base",
             title="Pretraining")  # fmt: skip
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def principal_components(embeddings: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA by SVD of the centred matrix.

    embeddings: [N, D] float. Returns (scores [N, k], explained variance ratio [k]); when
    N or D is below k the missing components are zero.
    """
    data = np.asarray(embeddings, dtype=np.float64)
    centred = data - data.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = np.zeros((data.shape[0], k))
    ratio = np.zeros(k)
    m = min(k, s.size)
    scores[:, :m] = u[:, :m] * s[:m]
    total = float((s**2).sum())
    if total > 0:
        ratio[:m] = s[:m] ** 2 / total
    return scores, ratio


def embedding_map(
    embeddings: np.ndarray,
    contigs: np.ndarray,
    midpoints: np.ndarray,
    gc: np.ndarray | None,
    title: str,
) -> Figure:
    """PCA of window embeddings coloured by GC content (by position without it), and PC1 along
    each contig (the largest six, by window count).

    embeddings: [N, D]; contigs: [N] names; midpoints: [N] window midpoints in bases.
    """
    scores, ratio = principal_components(embeddings)
    figure = Figure(figsize=(10, 3.8))
    scatter_axes, track_axes = figure.subplots(1, 2)
    colour, colour_label = (gc, "GC content") if gc is not None else (midpoints, "position (bases)")
    points = scatter_axes.scatter(scores[:, 0], scores[:, 1], c=colour, cmap="viridis", s=12)
    figure.colorbar(points, ax=scatter_axes, label=colour_label)
    scatter_axes.set(
        xlabel=f"PC1 ({ratio[0]:.0%} of variance)",
        ylabel=f"PC2 ({ratio[1]:.0%} of variance)",
        title=f"Window embeddings: {title}",
    )
    names, counts = np.unique(contigs, return_counts=True)
    for name in names[np.argsort(-counts, kind="stable")][:6]:
        rows = np.flatnonzero(contigs == name)
        rows = rows[np.argsort(midpoints[rows], kind="stable")]
        track_axes.plot(midpoints[rows] / 1000.0, scores[rows, 0], label=name)
    track_axes.set(xlabel="position in contig (kbp)", ylabel="PC1", title="PC1 along each contig")
    track_axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


LONG_CONTEXT_LABELS = {"memory": "memory as trained", "memory_reset": "memory reset (ablation)"}


def long_context_figure(result: dict) -> Figure:
    """The context curve (bits/base of the same bases against left context) and planted-repeat
    recall (second copy over first against distance), memory as trained and reset.

    `result`: the JSON of `titans-dna long-context`.
    """
    figure = Figure(figsize=(10, 3.6))
    curve_axes, recall_axes = figure.subplots(1, 2)
    for key, points in result["curve"].items():
        curve_axes.plot(
            [p["context"] for p in points],
            [p["bits_per_base"] for p in points],
            marker="o",
            label=LONG_CONTEXT_LABELS.get(key, key),
        )
    curve_axes.set_xscale("log", base=2)
    curve_axes.set(
        xlabel="left context (bases)", ylabel="bits per base", title="Held-out bits/base"
    )
    curve_axes.legend()
    for key, points in result["recall"].items():
        recall_axes.plot(
            [p["distance"] for p in points],
            [p["ratio"] for p in points],
            marker="o",
            label=LONG_CONTEXT_LABELS.get(key, key),
        )
    recall_axes.axhline(1.0, color="grey", linestyle="--", label="no recall")
    recall_axes.set_xscale("log", base=2)
    recall_axes.set(
        xlabel="distance between copies (bases)",
        ylabel="second copy / first copy (bits/base)",
        title="Planted-repeat recall",
    )
    recall_axes.legend()
    figure.tight_layout()
    return figure


def variant_figure(llr: np.ndarray, frequency: np.ndarray | None, title: str) -> Figure:
    """The distribution of variant scores and, where the VCF has INFO AF, score against allele
    frequency. llr [N] (nats); frequency [N] (NaN where absent) or None."""
    panels = 2 if frequency is not None and np.isfinite(frequency).any() else 1
    figure = Figure(figsize=(5 * panels, 3.6))
    axes = figure.subplots(1, panels, squeeze=False)[0]
    axes[0].hist(llr, bins=min(50, max(10, len(llr) // 5)), color="tab:blue")
    axes[0].axvline(0, color="grey", linestyle="--")
    axes[0].set(xlabel="log-likelihood ratio alt vs ref (nats)", ylabel="alleles",
                title=f"Variant scores: {title}")  # fmt: skip
    if panels == 2:
        known = np.isfinite(frequency)
        axes[1].scatter(frequency[known], llr[known], s=10, alpha=0.7)
        axes[1].set_xscale("log")
        axes[1].axhline(0, color="grey", linestyle="--")
        axes[1].set(xlabel="allele frequency (INFO AF)", ylabel="log-likelihood ratio (nats)",
                    title="Score against allele frequency")  # fmt: skip
    figure.tight_layout()
    return figure


def classification_figure(
    history: Sequence[dict],
    labels: np.ndarray | None,
    probabilities: np.ndarray | None,
    label_names: Sequence[str],
    *,
    threshold: float | None = None,
) -> Figure:
    """A fine-tuning run: dev MCC and ROC-AUC against step, and on the test set (when given:
    label ids [N], probabilities [N, K]) ROC and precision-recall curves (the positive class,
    or each class against the rest for K > 2) and the confusion matrix of the model's
    predictions (arg-max, or class 1 from `threshold`)."""
    panels = 4 if labels is not None else 1
    figure = Figure(figsize=(3.6 * panels, 3.4))
    axes = np.atleast_1d(figure.subplots(1, panels))
    _dev_curve(axes[0], history)
    if labels is not None:
        _roc_and_pr(axes[1], axes[2], labels, probabilities, label_names)
        _confusion(axes[3], labels, probabilities, label_names, threshold)
    figure.tight_layout()
    return figure


def _dev_curve(axes, history: Sequence[dict]) -> None:
    steps = [record["step"] for record in history]
    for key, label in (("mcc", "dev MCC"), ("auroc", "dev ROC-AUC")):
        values = [record["dev"].get(key) for record in history]
        points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=label)
    axes.set(xlabel="training step", ylabel="score", title="Dev set during training")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend()


def _roc_and_pr(roc_axes, pr_axes, labels, probabilities, label_names) -> None:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    classes = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    for k in classes:
        truth = labels == k
        if truth.all() or not truth.any():
            continue  # a curve needs both outcomes
        name = label_names[k] if k < len(label_names) else str(k)
        fpr, tpr, _ = roc_curve(truth, probabilities[:, k])
        roc_axes.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(truth, probabilities[:, k])
        pr_axes.plot(recall, precision, label=f"{name} (base rate {truth.mean():.2f})")
    roc_axes.plot([0, 1], [0, 1], color="grey", linestyle="--")
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="Test ROC")
    pr_axes.set(xlabel="recall", ylabel="precision", title="Test precision-recall", ylim=(0, 1.02))
    for axes in (roc_axes, pr_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")


def _confusion(axes, labels, probabilities, label_names, threshold) -> None:
    k = probabilities.shape[1]
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (labels, predicted_classes(probabilities, threshold)), 1)
    axes.imshow(counts, cmap="Blues")
    low, span = counts.min(), max(counts.max() - counts.min(), 1)
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if (n - low) / span > 0.5 else "black"  # dark cells get light text
        axes.text(j, i, f"{n:,}", ha="center", va="center", color=color)
    names = [label_names[i] if i < len(label_names) else str(i) for i in range(k)]
    axes.set(xticks=range(k), yticks=range(k), xticklabels=names, yticklabels=names,
             xlabel="predicted", ylabel="true label", title="Test confusion matrix")  # fmt: skip
