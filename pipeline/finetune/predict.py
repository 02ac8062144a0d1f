"""Pooled features and class probabilities from a classifier, strand-averaged, batched by length."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.batching import (
    BATCH_TOKENS,
    MAX_BATCH,
    inference_batches,
    pad_batch,
    reverse_complement,
    stream_piece_len,
)
from pipeline.device import autocast
from titans_dna.models.classifier import TitansForSequenceClassification

log = logging.getLogger("pipeline")


@torch.no_grad()
def pooled_features(
    model: TitansForSequenceClassification,
    sequences: Sequence[np.ndarray],
    *,
    device: torch.device,
    batch_tokens: int = BATCH_TOKENS,
) -> np.ndarray:
    """The head's inputs [N, d_model] (float32, eval mode) for token-id arrays of any lengths.

    Long sequences stream through the recurrent state, so memory is bounded by `batch_tokens`.
    """
    was_training = model.training
    model.eval()
    piece_len = stream_piece_len(model.config.stream_multiple)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    features = np.zeros((len(sequences), model.config.d_model), dtype=np.float32)
    for batch in inference_batches(lengths, batch_tokens, MAX_BATCH, piece_len):
        tokens, mask = pad_batch([sequences[i] for i in batch])
        with autocast(device):
            pooled = model.embed(tokens.to(device), mask.to(device), piece_len=piece_len)
        features[batch] = pooled.float().cpu().numpy()
    model.train(was_training)
    return features


@torch.no_grad()
def predict_proba(
    model: TitansForSequenceClassification,
    sequences: Sequence[np.ndarray],
    *,
    device: torch.device,
    rc_average: bool = True,
    batch_tokens: int = BATCH_TOKENS,
) -> np.ndarray:
    """Probabilities [N, num_labels] for token-id arrays of any lengths.

    With `rc_average`, the mean of the probabilities of each sequence and its reverse complement.
    """
    strands = [sequences]
    if rc_average:
        strands.append([reverse_complement(s) for s in sequences])
    probabilities = np.zeros((len(sequences), model.num_labels), dtype=np.float64)
    for strand in strands:
        features = pooled_features(model, strand, device=device, batch_tokens=batch_tokens)
        logits = model.head(torch.from_numpy(features).to(device, model.head.weight.dtype))
        probabilities += torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probabilities / len(strands)


def predict_file(
    model: TitansForSequenceClassification,
    input_path: str | Path,
    out: str | Path,
    *,
    device: torch.device,
    rc_average: bool | None = None,
    reference: str | Path | None = None,
    genome: str | Path | None = None,
    invalid: str = "error",
) -> int:
    """Class probabilities of every record of `input_path` into the CSV `out` (id, length,
    predicted class, p_CLASS per class, and the true label when the input has one), written
    atomically; `rc_average` None follows the model, and the predicted class follows its
    decision threshold. Returns the number of rows."""
    import csv

    from pipeline.atomic import atomic_file
    from pipeline.io.items import blocks, read_items
    from pipeline.metrics import predicted_classes

    rc_average = model.rc_average if rc_average is None else rc_average
    items = read_items(input_path, reference=reference, genome=genome, invalid=invalid)
    names, count = model.label_names, 0
    with atomic_file(out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        for block in blocks(items):
            if count == 0:  # the first block decides whether a true-label column is written
                with_labels = any(item.label is not None for item in block)
                header = ["id", "length", "predicted"] + [f"p_{name}" for name in names]
                writer.writerow(header + (["label"] if with_labels else []))
            probabilities = predict_proba(
                model, [item.tokens for item in block], device=device, rc_average=rc_average
            )
            predicted = predicted_classes(probabilities, model.decision_threshold)
            for item, probs, label in zip(block, probabilities, predicted, strict=True):
                row = [item.id, len(item.tokens), names[label]]
                row += [f"{p:.6f}" for p in probs]
                writer.writerow(row + ([item.label or ""] if with_labels else []))
            count += len(block)
    log.info("wrote %d predictions to %s", count, out)
    return count
