"""The report's embedding map: window embeddings of a genome (`titans-dna embed --window`) by
principal components, drawn along each contig and coloured by GC content, with how much of the
first component GC content explains (a model whose PC1 is mostly GC has learnt composition)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import input_error
from pipeline.report.figures import embedding_map, figure_png, principal_components
from pipeline.report.markup import key_value_table

# Readable names of the embeddings file's root attributes (pipeline/embed/store.py).
ATTRIBUTE_LABELS = {
    "checkpoint": "model",
    "checkpoint_sha256": "model sha256",
    "created": "written",
    "dtype": "stored as",
    "input": "input",
    "layer": "layer",
    "num_sequences": "windows written",
    "num_tokens": "bases embedded",
    "package_version": "titans-dna version",
    "piece_len": "streamed piece (bases)",
    "pooling": "pooling",
    "rc_average": "mean of both strands",
    "schema_version": "file schema version",
    "stride": "stride (bases)",
    "tokenizer": "tokenizer",
    "window": "window (bases)",
    "window_ids": "window ids",
}


@dataclass
class WindowEmbeddings:
    """vectors [N, D]; contigs [N] (one name for files without /windows); midpoints [N] bases
    inside the contig (the row index without /windows); gc [N] or None for older files."""

    vectors: np.ndarray
    contigs: np.ndarray
    midpoints: np.ndarray
    gc: np.ndarray | None
    attrs: dict


def read_window_embeddings(path: Path) -> WindowEmbeddings:
    """The windows of an embeddings HDF5 file; a one-line PipelineError when it is not one."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            vectors = np.asarray(handle["embeddings"][()], dtype=np.float32)
            contigs, midpoints = _window_places(handle, vectors.shape[0])
            gc = handle["gc_content"][()].astype(np.float64) if "gc_content" in handle else None
            attrs = {key: _attr(value) for key, value in handle.attrs.items()}
    except (OSError, KeyError) as error:
        raise input_error(path, f"not a readable embeddings file ({error})") from None
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise input_error(path, f"/embeddings has shape {vectors.shape}, expected [N>0, D]")
    return WindowEmbeddings(vectors, contigs, midpoints, gc, attrs)


def _window_places(handle, n: int) -> tuple[np.ndarray, np.ndarray]:
    if "windows" not in handle:
        return np.full(n, "all"), np.arange(n, dtype=np.float64)
    windows = handle["windows"]
    if hasattr(windows, "keys"):  # a group of column datasets
        columns = {name: windows[name][()] for name in windows}
    else:  # one compound dataset
        table = windows[()]
        columns = {name: table[name] for name in table.dtype.names}
    start = np.asarray(columns["start"], dtype=np.float64)
    end = np.asarray(columns["end"], dtype=np.float64)
    contig = columns.get("contig", np.full(n, "all"))
    contigs = np.array([c.decode() if isinstance(c, bytes) else str(c) for c in contig])
    return contigs, (start + end) / 2


def _attr(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    return str(value)


def gc_share_of_pc1(vectors: np.ndarray, gc: np.ndarray | None) -> float | None:
    """R² of PC1 on GC content over the windows with a GC value (None when not computable)."""
    if gc is None:
        return None
    scores, _ = principal_components(vectors, k=1)
    known = np.isfinite(gc)
    if known.sum() < 3 or np.std(gc[known]) == 0 or np.std(scores[known, 0]) == 0:
        return None
    return float(np.corrcoef(scores[known, 0], gc[known])[0, 1] ** 2)


def embedding_section(path: Path) -> str:
    windows = read_window_embeddings(path)
    share = gc_share_of_pc1(windows.vectors, windows.gc)
    image = figure_png(
        embedding_map(windows.vectors, windows.contigs, windows.midpoints, windows.gc, path.stem)
    )
    facts = {
        "file": str(path),
        "windows": f"{windows.vectors.shape[0]:,}",
        "contigs": f"{len(set(windows.contigs)):,}",
        "dimension": str(windows.vectors.shape[1]),
        "PC1 variance explained by GC content (R²)": "—" if share is None else f"{share:.0%}",
    }
    facts.update({k: v for k, v in windows.attrs.items() if k != "model_config" and len(v) < 200})
    return (
        f"<h2>Embeddings: {html.escape(path.name)}</h2>"
        f'<img alt="embedding PCA" src="data:image/png;base64,{image}">' + key_value_table(facts)
    )
