"""Frozen-embedding linear probe: how much task information mean-pooled embeddings carry.

Protocol: mean-pooled final-layer embeddings and test ROC-AUC as the main score, as in the 2025
benchmark of DNA foundation models on zero-shot embeddings (Feng et al., Nature Communications
2025, which trains a random forest on them); here the classifier is linear, so the score measures
linearly readable information: embeddings standardised with statistics of the training examples,
logistic regression whose inverse regularisation C is chosen by stratified 5-fold
cross-validation (LogisticRegressionCV, ROC-AUC scoring) on train + dev together, then scored
once on test: ROC-AUC, MCC, accuracy, macro F1.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.metrics import classification_metrics

# Inverse regularisation strengths searched by cross-validation (log-spaced, 1e-4 .. 1e4).
C_GRID = np.logspace(-4, 4, 9)
MAX_FOLDS = 5


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_labels: int,
    seed: int = 0,
) -> dict:
    """Fit on train_x [N, D] / train_y [N]; score on test_x [M, D]. Returns metrics and chosen C."""
    probe, folds = fit_probe(train_x, train_y, num_labels=num_labels, seed=seed)
    probabilities = _full_proba(probe, test_x, num_labels)
    chosen_c = float(np.atleast_1d(probe[-1].C_)[0])
    return {"test": classification_metrics(test_y, probabilities), "C": chosen_c, "folds": folds}


def fit_probe(
    x: np.ndarray, y: np.ndarray, *, num_labels: int, seed: int = 0, select_by: str = "auroc"
) -> tuple:
    """A fitted (StandardScaler, LogisticRegressionCV) pipeline on x [N, D], y [N]; and its folds.

    C is chosen by cross-validated ROC-AUC (`select_by="auroc"`) or log loss ("log_loss": the
    calibrated choice, for a head that goes on training under cross-entropy). ValueError when a
    class has fewer than two examples (no cross-validation possible).
    """
    folds = cv_folds(y, num_labels)
    if folds < 2:
        raise ValueError("every class needs at least two training examples for cross-validation")
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=C_GRID,
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            scoring=_scoring(select_by, num_labels),
            l1_ratios=(0.0,),  # plain L2 regularisation
            max_iter=2000,
            use_legacy_attributes=False,
        ),
    )
    with warnings.catch_warnings():
        # A few folds at the weakest regularisation may stop at max_iter; the chosen C converges.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x, y)
    return probe, folds


def cv_folds(y: np.ndarray, num_labels: int) -> int:
    """Stratified folds the probe uses for labels y [N]: at most MAX_FOLDS, at most the size of
    the smallest class (below 2, no cross-validation is possible)."""
    return int(min(MAX_FOLDS, np.bincount(y, minlength=num_labels).min()))


def _scoring(select_by: str, num_labels: int) -> str:
    if select_by == "log_loss":
        return "neg_log_loss"
    if select_by == "auroc":
        return "roc_auc" if num_labels == 2 else "roc_auc_ovr"
    raise ValueError(f"select_by must be 'auroc' or 'log_loss', got {select_by!r}")


def _full_proba(probe, x: np.ndarray, num_labels: int) -> np.ndarray:
    """Probabilities [M, num_labels], zero columns for classes absent from training."""
    out = np.zeros((len(x), num_labels))
    out[:, probe.classes_] = probe.predict_proba(x)
    return out
