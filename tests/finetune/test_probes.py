"""Linear probes before fine-tuning: the orientation test and the probe head's exact transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.finetune import probes as probes_module
from pipeline.finetune.probes import check_orientation, head_from_probe, probe_head, sample_features
from pipeline.io.tasks import LabelledSplit
from pipeline.probe import fit_probe
from titans_dna.models.classifier import TitansForSequenceClassification
from titans_dna.tokenizer import DNATokenizer

from .conftest import tiny_config

CPU = torch.device("cpu")
MOTIF = DNATokenizer().encode("GAATTC" * 4)[0]  # its own reverse complement


def motif_task(rng: np.random.Generator, n: int, oriented: bool) -> LabelledSplit:
    """Random DNA of 40-90 bp with a reverse-palindromic motif.

    Oriented: the label says whether the motif sits at the 3' end or the 5' end, which the
    reverse complement swaps. Symmetric: the label says whether the motif is there at all.
    """
    labels = np.arange(n) % 2
    sequences = []
    for label in labels:
        seq = DNATokenizer().encode("".join(rng.choice(list("ACGT"), int(rng.integers(40, 90)))))[0]
        if oriented:
            start = len(seq) - len(MOTIF) if label else 0
            seq[start : start + len(MOTIF)] = MOTIF
        elif label:
            start = int(rng.integers(0, len(seq) - len(MOTIF)))
            seq[start : start + len(MOTIF)] = MOTIF
        sequences.append(seq)
    return LabelledSplit("synthetic", [str(i) for i in range(n)], sequences, labels)


def classifier(seed: int, pooling: str = "last") -> TitansForSequenceClassification:
    """Last-token pooling sees where the motif is; the mean over tokens, whether it is there."""
    torch.manual_seed(seed)
    return TitansForSequenceClassification(tiny_config(), 2, pooling)


def test_oriented_labels_are_detected() -> None:
    rng = np.random.default_rng(0)
    model = classifier(0)
    sample = sample_features(model, motif_task(rng, 200, oriented=True), device=CPU, rng=rng)
    check = check_orientation(sample, 2)
    assert check.oriented
    assert check.forward_auroc > 0.9 and check.symmetric_auroc < 0.7


def test_strand_symmetric_labels_keep_both_strands() -> None:
    rng = np.random.default_rng(1)
    model = classifier(0, "mean")
    sample = sample_features(model, motif_task(rng, 200, oriented=False), device=CPU, rng=rng)
    check = check_orientation(sample, 2)
    assert not check.oriented and check.symmetric_auroc > 0.8


def test_sample_is_capped_and_covers_both_strands(monkeypatch) -> None:
    monkeypatch.setattr(probes_module, "MAX_EXAMPLES", 64)
    model = classifier(1).eval()
    train = motif_task(np.random.default_rng(2), 150, oriented=True)
    sample = sample_features(model, train, device=CPU, rng=np.random.default_rng(3))
    chosen = np.sort(np.random.default_rng(3).choice(150, 64, replace=False))
    np.testing.assert_array_equal(sample.labels, train.labels[chosen])
    assert sample.forward.shape == sample.reverse.shape == (64, 32)
    with torch.no_grad():
        rc = DNATokenizer().reverse_complement(train.sequences[chosen[0]])
        want = model.embed(torch.from_numpy(rc[None].astype(np.int64)))[0].numpy()
    np.testing.assert_allclose(sample.reverse[0], want, rtol=1e-5, atol=1e-6)


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


def test_probe_head_classifies_the_forward_strand() -> None:
    rng = np.random.default_rng(4)
    model = classifier(2)
    sample = sample_features(model, motif_task(rng, 200, oriented=True), device=CPU, rng=rng)
    weight, bias, summary = probe_head(sample, 2, both_strands=False, rng=rng)
    assert summary["examples"] == 200 and summary["folds"] == 5
    test = sample_features(model, motif_task(rng, 100, oriented=True), device=CPU, rng=rng)
    predicted = (test.forward @ weight.T + bias).argmax(1)
    assert (predicted == test.labels).mean() > 0.9
