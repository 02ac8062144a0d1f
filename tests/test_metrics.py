"""Classification metrics: values on hand-checked cases, binary and multi-class AUROC."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    auroc,
    classification_metrics,
    mcc,
    mcc_threshold,
    predicted_classes,
)


def test_binary_metrics_on_a_known_case() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(0.75)
    # tp=2 tn=1 fp=1 fn=0: (2*1 - 1*0) / sqrt(3*2*1*2)
    assert m["mcc"] == pytest.approx(2 / np.sqrt(12))
    assert m["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["auroc"] == pytest.approx(1.0)


def test_macro_f1_counts_a_never_predicted_class() -> None:
    labels = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1]]
    assert classification_metrics(labels, probs)["f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_multiclass_auroc_is_macro_one_vs_rest() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    probs = rng.dirichlet(np.ones(3), size=60)
    probs[np.arange(60), labels] += 2.0
    probs /= probs.sum(axis=1, keepdims=True)
    assert auroc(labels, probs) == pytest.approx(1.0)
    shuffled = rng.permutation(labels)
    assert 0.2 < auroc(shuffled, probs) < 0.8


def test_auroc_is_none_for_a_single_class() -> None:
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert auroc(np.array([1, 1]), probs) is None


def test_multiclass_auroc_with_an_absent_class() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.6, 0.2]])
    assert auroc(labels, probs) == pytest.approx(1.0)


def brute_force_threshold_mcc(labels: np.ndarray, positive: np.ndarray) -> float:
    values = np.unique(positive)
    cuts = (values[:-1] + values[1:]) / 2
    return max(mcc(labels, (positive >= t).astype(int)) for t in cuts)


def test_mcc_threshold_beats_half_on_a_known_case() -> None:
    # Positives score 0.3-0.45, negatives 0.1-0.25: arg-max calls everything negative (MCC 0),
    # a threshold between 0.25 and 0.3 separates them perfectly.
    labels = np.array([0, 0, 0, 1, 1, 1])
    positive = np.array([0.1, 0.2, 0.25, 0.3, 0.4, 0.45])
    probs = np.stack([1 - positive, positive], axis=1)
    threshold = mcc_threshold(labels, probs)
    assert threshold == pytest.approx(0.275)
    assert classification_metrics(labels, probs)["mcc"] == 0
    assert classification_metrics(labels, probs, threshold)["mcc"] == pytest.approx(1.0)
    assert predicted_classes(probs, threshold).tolist() == labels.tolist()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mcc_threshold_is_the_best_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 80))
    labels = rng.integers(0, 2, n)
    positive = np.round(np.clip(0.3 + 0.2 * labels + rng.normal(0, 0.2, n), 0, 1), 2)
    probs = np.stack([1 - positive, positive], axis=1)
    threshold = mcc_threshold(labels, probs)
    best = brute_force_threshold_mcc(labels, positive)
    assert classification_metrics(labels, probs, threshold)["mcc"] == pytest.approx(best)


def test_mcc_threshold_prefers_half_when_nothing_separates() -> None:
    probs = np.full((4, 2), 0.5)
    assert mcc_threshold(np.array([0, 1, 0, 1]), probs) == 0.5
    # the cuts at 0.15 and 0.35 both score MCC 2 / sqrt(12): the one nearer 0.5 wins
    positive = np.array([0.1, 0.2, 0.3, 0.4])
    probs = np.stack([1 - positive, positive], axis=1)
    assert mcc_threshold(np.array([0, 1, 0, 1]), probs) == pytest.approx(0.35)


def test_a_threshold_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="two classes"):
        predicted_classes(np.eye(3), 0.5)
