"""Classification metrics for labelled tasks: MCC, accuracy, macro F1 and ROC-AUC (scikit-learn),
and the decision threshold that maximises MCC for a binary task.

AUROC is binary (probability of class 1) for two classes and macro one-vs-rest otherwise. It is
undefined when the scored labels hold a single class; it is then reported as None (JSON null)
rather than NaN, which JSON cannot carry.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

METRIC_NAMES = ("mcc", "accuracy", "f1", "auroc")


def mcc(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Matthews correlation coefficient (multi-class generalisation for more than two classes)."""
    return float(matthews_corrcoef(labels, predicted))


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(accuracy_score(labels, predicted))


def macro_f1(labels: np.ndarray, predicted: np.ndarray, num_labels: int) -> float:
    """F1 averaged over all `num_labels` classes with equal weight (absent classes score 0)."""
    return float(f1_score(labels, predicted, labels=list(range(num_labels)), average="macro"))


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """ROC-AUC from class probabilities [N, K]: binary for K == 2, macro one-vs-rest for K > 2.

    Returns None when `labels` holds fewer than two classes (the score is undefined).
    """
    present = np.unique(labels)
    if present.size < 2:
        return None
    num_labels = probabilities.shape[1]
    if num_labels == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    if present.size < num_labels:
        # Score the classes present; renormalise so each row still sums to one.
        sub = probabilities[:, present]
        probabilities = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        labels = np.searchsorted(present, labels)
    if present.size == 2:
        return float(roc_auc_score(labels, probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"))


def predicted_classes(probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class ids [N] from probabilities [N, K]: the arg-max, or with `threshold` (two classes
    only) class 1 wherever its probability is at least `threshold`."""
    probabilities = np.asarray(probabilities)
    if threshold is None:
        return probabilities.argmax(axis=1)
    if probabilities.shape[1] != 2:
        raise ValueError(f"a decision threshold needs two classes, not {probabilities.shape[1]}")
    return (probabilities[:, 1] >= threshold).astype(np.int64)


def mcc_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold on the probability of class 1 (two classes) whose predictions have the
    highest MCC on these labels: a midpoint between consecutive distinct probabilities, the one
    nearest 0.5 among equal MCCs; 0.5 when no cut separates anything (MCC 0 everywhere)."""
    positive = np.asarray(probabilities, dtype=np.float64)[:, 1]
    order = np.argsort(-positive, kind="stable")
    p, truth = positive[order], np.asarray(labels)[order] == 1
    cuts = np.flatnonzero(p[:-1] > p[1:]) + 1  # predict the first `cut` examples positive
    if cuts.size == 0:
        return 0.5
    tp = np.cumsum(truth)[cuts - 1].astype(np.float64)
    fp = cuts - tp
    fn, tn = truth.sum() - tp, (~truth).sum() - fp
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    scores = np.divide(tp * tn - fp * fn, denominator, out=np.zeros_like(tp), where=denominator > 0)
    if scores.max() <= 0:
        return 0.5
    thresholds = (p[cuts - 1] + p[cuts]) / 2
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(thresholds[best[np.argmin(np.abs(thresholds[best] - 0.5))]])


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float | None = None
) -> dict[str, float | None]:
    """All four metrics from integer labels [N] and class probabilities [N, K].

    The predicted class is the arg-max of the probabilities, or with `threshold` (two classes)
    class 1 wherever its probability reaches it; AUROC does not depend on it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = predicted_classes(probabilities, threshold)
    return {
        "mcc": mcc(labels, predicted),
        "accuracy": accuracy(labels, predicted),
        "f1": macro_f1(labels, predicted, probabilities.shape[1]),
        "auroc": auroc(labels, probabilities),
    }
