"""What linear probes on the frozen backbone tell fine-tuning before it starts.

Both use pooled features of a seeded sample of train (never dev or test), embedded once, on both
strands:

1. Orientation. Reverse-complement augmentation and strand-averaged predictions assume that a
   sequence and its reverse complement carry the same label. That holds for ChIP-seq peaks,
   read in either orientation, but not for promoters given in transcript orientation (a TATA
   box sits about 30 bp upstream of the start site, on the sense strand), where both throw the
   signal away. Two probes compare the forward strand's features with the mean of both strands'
   features (all a strand-symmetric classifier can use); the task is oriented when the forward
   probe's cross-validated ROC-AUC is higher by more than `MARGIN`.
2. A first candidate. A probe fitted on the features fine-tuning will see (each example on a
   random strand, or the forward strand of an oriented task; C by cross-validated log loss),
   folded into the classifier's linear head, is scored on dev before training: model selection
   then never returns less than the frozen backbone offers, e.g. when the budget ends while
   fine-tuning still underfits. Training itself starts from the randomly initialised head: a
   probe head's large weights on low-variance feature directions turn the backbone's first
   updates into large logit swings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.batching import reverse_complement
from pipeline.finetune.predict import pooled_features
from pipeline.io.tasks import LabelledSplit
from pipeline.probe import cv_folds, fit_probe
from titans_dna.models.classifier import TitansForSequenceClassification

log = logging.getLogger("pipeline")
# Cross-validated ROC-AUC by which forward-strand features must beat strand-symmetric ones.
MARGIN = 0.02
# Examples the probes are fitted on (a seeded sample beyond this): plenty for a linear model
# on d_model features, and a small share of a fine-tuning budget to embed.
MAX_EXAMPLES = 8192


@dataclass
class ProbeSample:
    """Pooled features [n, d_model] of a sample of train on both strands, and its labels [n]."""

    forward: np.ndarray
    reverse: np.ndarray
    labels: np.ndarray

    def cross_validatable(self, num_labels: int) -> bool:
        """Every class has the two examples that stratified cross-validation needs."""
        return cv_folds(self.labels, num_labels) >= 2


@dataclass
class StrandCheck:
    """The orientation test's probe scores and decision."""

    forward_auroc: float
    symmetric_auroc: float
    oriented: bool


def sample_features(
    model: TitansForSequenceClassification,
    train: LabelledSplit,
    *,
    device: torch.device,
    rng: np.random.Generator,
) -> ProbeSample:
    """Embed (a seeded sample of at most MAX_EXAMPLES of) `train` on both strands."""
    index = np.arange(len(train))
    if len(index) > MAX_EXAMPLES:
        index = np.sort(rng.choice(index, MAX_EXAMPLES, replace=False))
    sequences = [train.sequences[i] for i in index]
    forward = pooled_features(model, sequences, device=device)
    reverse = pooled_features(model, [reverse_complement(s) for s in sequences], device=device)
    return ProbeSample(forward, reverse, train.labels[index])


def check_orientation(sample: ProbeSample, num_labels: int) -> StrandCheck:
    """Whether the labels depend on orientation (module docstring, part 1)."""
    scores = [
        _cv_auroc(x, sample.labels, num_labels)
        for x in (sample.forward, (sample.forward + sample.reverse) / 2)
    ]
    check = StrandCheck(round(scores[0], 4), round(scores[1], 4), scores[0] > scores[1] + MARGIN)
    log.info(
        "strand check: probe AUROC %.4f on the forward strand, %.4f strand-symmetric: %s",
        check.forward_auroc,
        check.symmetric_auroc,
        "labels depend on orientation, so the given strand only"
        if check.oriented
        else "both strands",
    )
    return check


def probe_head(
    sample: ProbeSample, num_labels: int, *, both_strands: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Weight [num_labels, D], bias [num_labels] and a summary of the candidate's probe
    (module docstring, part 2)."""
    features = sample.forward
    if both_strands:
        flips = rng.random(len(sample.labels)) < 0.5
        features = np.where(flips[:, None], sample.reverse, sample.forward)
    probe, folds = fit_probe(features, sample.labels, num_labels=num_labels, select_by="log_loss")
    weight, bias = head_from_probe(probe, num_labels)
    chosen_c = float(np.atleast_1d(probe[-1].C_)[0])
    return weight, bias, {"examples": len(sample.labels), "C": chosen_c, "folds": folds}


def head_from_probe(probe, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight [num_labels, D] and bias [num_labels] (float32) of a linear layer whose softmax
    equals the probe's (StandardScaler, LogisticRegression) probabilities on raw features.

    A binary probe has one logit z for class 1: the head gets logits (-z/2, z/2), whose softmax
    is the probe's sigmoid(z). The probe must have seen all `num_labels` classes.
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


def _cv_auroc(x: np.ndarray, y: np.ndarray, num_labels: int) -> float:
    """The best mean cross-validated ROC-AUC over the probe's regularisation grid."""
    probe, _ = fit_probe(x, y, num_labels=num_labels)
    return float(probe[-1].scores_.mean(axis=0).max())
