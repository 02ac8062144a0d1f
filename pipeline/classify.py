"""Pooled features and class probabilities from a classifier, strand-averaged, batched by length."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.batching import inference_batches, pad_batch, reverse_complement
from titans_dna.models.classifier import TitansForSequenceClassification

# Default tokens per streamed piece, rounded up to the model's streaming multiple.
PIECE_TOKENS = 2048
BATCH_TOKENS = 32768
MAX_BATCH = 256


def stream_piece_len(multiple: int, target: int = PIECE_TOKENS) -> int:
    """`target` rounded up to a multiple of the model's streaming unit."""
    return max(multiple, -(-target // multiple) * multiple)


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
        with _autocast(device):
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


def _autocast(device: torch.device) -> torch.autocast:
    """bfloat16 autocast on CUDA (tensor cores); plain float32 on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
