"""Figures for the HTML report, rendered off-screen (no display needed) to base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

UNIFORM_BITS_PER_BASE = 2.0  # log2(4): what a model that knows nothing about DNA scores


def figure_png(figure: Figure) -> str:
    """Render a figure to a base64 PNG string for a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _series(rows: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    points = [
        (row["step"], row[key])
        for row in rows
        if row.get(key) is not None and math.isfinite(row[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def pretraining_curves(rows: Sequence[dict], baselines: dict[str, float] | None = None) -> Figure:
    """Loss (train and validation) and validation bits per base against the optimiser step.

    `rows` are metrics rows with at least "step"; absent or non-finite values are skipped.
    `baselines` ({label: bits per base}) are drawn as horizontal lines beside the uniform 2 bits.
    """
    figure = Figure(figsize=(10, 3.6))
    loss_axes, bits_axes = figure.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        steps, values = _series(rows, key)
        if steps:
            loss_axes.plot(steps, values, marker="." if key == "val_loss" else None, label=label)
    loss_axes.set(xlabel="step", ylabel="loss (nats per base)", title="Pretraining loss")
    loss_axes.legend()
    steps, values = _series(rows, "val_bits_per_base")
    if steps:
        bits_axes.plot(steps, values, marker=".", color="tab:orange", label="validation")
    bits_axes.axhline(UNIFORM_BITS_PER_BASE, color="grey", linestyle="--", label="uniform (2 bits)")
    for (label, bits), style in zip((baselines or {}).items(), (":", "-."), strict=False):
        bits_axes.axhline(bits, color="tab:green", linestyle=style, label=label)
    bits_axes.set(xlabel="step", ylabel="bits per base", title="Validation bits per base")
    bits_axes.legend()
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


def embedding_map(embeddings: np.ndarray, positions: np.ndarray, title: str) -> Figure:
    """PCA of window embeddings coloured by genome position, and PC1/PC2 along the genome.

    embeddings: [N, D]; positions: [N] window midpoints in bases.
    """
    scores, ratio = principal_components(embeddings)
    kbp = np.asarray(positions, dtype=np.float64) / 1000.0
    figure = Figure(figsize=(10, 3.8))
    scatter_axes, track_axes = figure.subplots(1, 2)
    points = scatter_axes.scatter(scores[:, 0], scores[:, 1], c=kbp, cmap="viridis", s=12)
    figure.colorbar(points, ax=scatter_axes, label="window midpoint (kbp)")
    scatter_axes.set(
        xlabel=f"PC1 ({ratio[0]:.0%} of variance)",
        ylabel=f"PC2 ({ratio[1]:.0%} of variance)",
        title=f"Window embeddings: {title}",
    )
    order = np.argsort(kbp, kind="stable")
    track_axes.plot(kbp[order], scores[order, 0], label="PC1")
    track_axes.plot(kbp[order], scores[order, 1], label="PC2")
    track_axes.set(
        xlabel="position (kbp)", ylabel="score", title="Principal components along the genome"
    )
    track_axes.legend()
    figure.tight_layout()
    return figure
