"""A classifier head initialised by a linear probe: logistic regression on frozen pooled features.

Full fine-tuning from a randomly initialised head first spends its updates on the head while the
backbone receives gradients through a head that is still noise, which distorts pretrained
features; fitting the head to the frozen features first and then fine-tuning everything
(linear probing then fine-tuning, Kumar et al., ICLR 2022) starts training from the probe's
accuracy. The probe is the one of `titans-dna evaluate` (standardised features, L2 logistic
regression, C by stratified cross-validation on train only), with C chosen by log loss, since
the head then trains under cross-entropy. Its standardisation is folded into the linear head.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from pipeline.batching import augment_reverse_complement
from pipeline.classify import pooled_features
from pipeline.evaluate import fit_probe
from pipeline.tasks import LabelledSplit
from titans_dna.models.classifier import TitansForSequenceClassification

log = logging.getLogger("titans_dna")
# Examples the probe is fitted on (a seeded sample beyond this): enough for a d_model-wide
# linear model, and a small share of a 20-minute budget to embed.
MAX_PROBE_EXAMPLES = 8192


def probe_initialise_head(
    model: TitansForSequenceClassification,
    train: LabelledSplit,
    *,
    device: torch.device,
    rng: np.random.Generator,
    rc_augment: bool = True,
) -> dict:
    """Set `model.head` to a logistic regression fitted on pooled features of `train`.

    Each example is taken on a random strand when `rc_augment` (as training sees them). Returns
    what was done: examples used, the chosen C, seconds. When a class has fewer than two
    examples no probe can be cross-validated, and the head is left as it is.
    """
    started = time.monotonic()
    labels = train.labels
    index = np.arange(len(train))
    if len(index) > MAX_PROBE_EXAMPLES:
        index = np.sort(rng.choice(index, MAX_PROBE_EXAMPLES, replace=False))
    sequences = [train.sequences[i] for i in index]
    if rc_augment:
        sequences = augment_reverse_complement(sequences, rng)
    features = pooled_features(model, sequences, device=device)
    try:
        probe, folds = fit_probe(
            features, labels[index], num_labels=model.num_labels, select_by="log_loss"
        )
    except ValueError as err:
        log.info("head left at random initialisation: %s", err)
        return {"examples": len(index), "skipped": str(err)}
    weight, bias = head_from_probe(probe, model.num_labels)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight))
        model.head.bias.copy_(torch.from_numpy(bias))
    chosen_c = float(np.atleast_1d(probe[-1].C_)[0])
    seconds = round(time.monotonic() - started, 2)
    log.info(
        "head initialised by a linear probe on %d examples (C=%g, %.1f s)",
        len(index),
        chosen_c,
        seconds,
    )
    return {"examples": len(index), "C": chosen_c, "folds": folds, "seconds": seconds}


def head_from_probe(probe, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight [num_labels, D] and bias [num_labels] (float32) of a linear layer whose softmax
    equals the probe's predicted probabilities on unstandardised features.

    A binary probe has one logit z for class 1: the head gets logits (-z/2, z/2), whose softmax
    is the probe's sigmoid(z). The probe must have seen all `num_labels` classes (fit_probe
    refuses fewer than two examples of any class).
    """
    scaler, regression = probe[0], probe[-1]
    coef = regression.coef_ / scaler.scale_  # [K or 1, D], on raw features
    intercept = regression.intercept_ - coef @ scaler.mean_
    if len(regression.classes_) == 2 and coef.shape[0] == 1:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    if coef.shape[0] != num_labels:
        raise ValueError(f"the probe has {coef.shape[0]} classes, the head {num_labels}")
    return coef.astype(np.float32), intercept.astype(np.float32)
