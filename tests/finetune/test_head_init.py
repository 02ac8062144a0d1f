"""The head initialised by a linear probe: exact transfer of the probe, and what it buys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import head_init
from pipeline.classify import pooled_features, predict_proba
from pipeline.evaluate import fit_probe
from pipeline.head_init import head_from_probe, probe_initialise_head
from pipeline.metrics import classification_metrics
from pipeline.tasks import LabelledSplit
from titans_dna.models.classifier import TitansForSequenceClassification

from .conftest import tiny_config

CPU = torch.device("cpu")


@pytest.mark.parametrize("num_labels", [2, 3])
def test_head_reproduces_the_probe_probabilities(num_labels: int) -> None:
    rng = np.random.default_rng(num_labels)
    y = rng.integers(0, num_labels, 240)
    # Features on different scales and offsets: the standardisation must fold into the head.
    x = rng.normal(size=(240, 6)) * [1, 5, 0.1, 2, 3, 1] + [0, -4, 2, 0, 7, 1]
    x[:, 0] += y
    probe, _ = fit_probe(x, y, num_labels=num_labels, select_by="log_loss")
    weight, bias = head_from_probe(probe, num_labels)
    logits = torch.from_numpy(x).float() @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    got = torch.softmax(logits, dim=-1).numpy()
    np.testing.assert_allclose(got, probe.predict_proba(x), atol=1e-4)


def motif_task(rng: np.random.Generator, n: int) -> LabelledSplit:
    """Random DNA; class 1 carries a run of 12 Gs somewhere (strand-symmetric with its Cs)."""
    labels = np.arange(n) % 2
    sequences = []
    for label in labels:
        seq = rng.integers(1, 5, int(rng.integers(40, 90))).astype(np.uint8)
        if label:
            start = int(rng.integers(0, len(seq) - 12))
            seq[start : start + 12] = 3
        sequences.append(seq)
    return LabelledSplit("synthetic", [str(i) for i in range(n)], sequences, labels)


def test_probe_initialised_head_classifies_where_a_random_head_cannot() -> None:
    torch.manual_seed(0)
    model = TitansForSequenceClassification(tiny_config(), 2)
    rng = np.random.default_rng(0)
    train, test = motif_task(rng, 200), motif_task(rng, 100)
    before = predict_proba(model, test.sequences, device=CPU)
    lm_before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    info = probe_initialise_head(model, train, device=CPU, rng=rng)
    after = predict_proba(model, test.sequences, device=CPU)
    assert info["examples"] == 200 and info["folds"] == 5 and info["C"] > 0
    assert classification_metrics(test.labels, before)["mcc"] < 0.5
    assert classification_metrics(test.labels, after)["mcc"] > 0.8
    for name, value in model.lm.state_dict().items():
        torch.testing.assert_close(value, lm_before[name], msg=name)  # only the head changed
    assert model.training  # the caller's mode is kept


def test_probe_sample_is_capped_and_the_head_matches_it(monkeypatch) -> None:
    monkeypatch.setattr(head_init, "MAX_PROBE_EXAMPLES", 64)
    torch.manual_seed(1)
    model = TitansForSequenceClassification(tiny_config(), 2).eval()
    train = motif_task(np.random.default_rng(1), 150)
    info = probe_initialise_head(
        model, train, device=CPU, rng=np.random.default_rng(2), rc_augment=False
    )
    assert info["examples"] == 64
    # The head's logits on pooled features are the probe's: refit on the same sample to compare.
    chosen = np.sort(np.random.default_rng(2).choice(150, 64, replace=False))
    features = pooled_features(model, [train.sequences[i] for i in chosen], device=CPU)
    probe, _ = fit_probe(features, train.labels[chosen], num_labels=2, select_by="log_loss")
    with torch.no_grad():
        head = torch.softmax(model.head(torch.from_numpy(features)), dim=-1).numpy()
    np.testing.assert_allclose(head, probe.predict_proba(features), atol=1e-4)


def test_a_class_with_one_example_leaves_the_head_alone() -> None:
    torch.manual_seed(2)
    model = TitansForSequenceClassification(tiny_config(), 2)
    train = motif_task(np.random.default_rng(3), 20)
    train.labels[:] = 0
    train.labels[0] = 1
    weight = model.head.weight.detach().clone()
    info = probe_initialise_head(model, train, device=CPU, rng=np.random.default_rng(0))
    assert "two training examples" in info["skipped"]
    torch.testing.assert_close(model.head.weight, weight)
