"""The order-k Markov baseline: counts equal brute force, distributions sum to one, best order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.batching import reverse_complement
from pipeline.pretrain.markov import (
    MarkovCounts,
    _eval_positions,
    _order_probabilities,
    evaluate_markov,
)
from titans_dna.tokenizer import DNATokenizer

from .helpers import lambda_sequence

TOKENIZER = DNATokenizer()


@pytest.fixture(scope="module")
def lambda_ids(shared_data: Path) -> np.ndarray:
    ids, _ = TOKENIZER.encode(lambda_sequence(shared_data))
    return ids


def test_add_one_matches_brute_force_counts(lambda_ids: np.ndarray) -> None:
    train, held = lambda_ids[:40000], lambda_ids[40000:40400]
    order = 4
    counts = MarkovCounts([train], order, both_strands=False)
    text, held_text = TOKENIZER.decode(train), TOKENIZER.decode(held)
    kmers = Counter(text[i : i + order + 1] for i in range(len(text) - order))
    targets, avail, contexts = _eval_positions([held], order)
    probs = _order_probabilities(counts, targets, contexts, "add_one")
    for t in (20, 150, 390):
        position = t + 1  # the first base of a window is not scored
        context, base = held_text[position - order : position], held_text[position]
        total = sum(kmers[context + b] for b in "ACGT")
        assert avail[t] == order
        assert probs[order, t] == pytest.approx((kmers[context + base] + 1) / (total + 4))


@pytest.mark.parametrize("smoothing", ["kneser_ney", "add_one"])
def test_probabilities_sum_to_one(lambda_ids: np.ndarray, smoothing: str) -> None:
    counts = MarkovCounts([lambda_ids[:30000]], 8, both_strands=True)
    windows = [lambda_ids[30000:30300], lambda_ids[31000:31100]]
    _, _, contexts = _eval_positions(windows, 8)
    n = len(contexts[0])
    total = sum(
        _order_probabilities(counts, np.full(n, base), contexts, smoothing) for base in range(4)
    )
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_n_breaks_context_and_is_not_scored() -> None:
    ids, _ = TOKENIZER.encode("ACGTACGTNNACGTACGT" * 50)
    counts = MarkovCounts([ids], 3, both_strands=False)
    assert counts.raw[0].sum() == np.count_nonzero(ids != 9)  # N never counted
    window, _ = TOKENIZER.encode("ACGTNACGTA")
    targets, avail, _ = _eval_positions([window], 3)
    # scored: C G T (after A), then A C G T A after N (A has no context)
    assert len(targets) == 8
    assert list(avail) == [1, 2, 3, 0, 1, 2, 3, 3]


def test_structured_sequence_is_learned_and_best_order_found() -> None:
    rng = np.random.default_rng(0)
    motif = rng.integers(5, 9, 7).astype(np.uint8)
    train = np.tile(motif, 2000)
    held = np.tile(motif, 30)
    result = evaluate_markov(MarkovCounts([train], 8, both_strands=False), [held], "kneser_ney")
    assert result.bits_per_order[0] > 1.0  # base composition alone is uncertain
    assert result.best_bits_per_base < 0.1  # the period-7 repeat is predictable from context
    assert result.best_order >= 1
    assert result.best_bits_per_base == min(result.bits_per_order.values())


def test_both_strands_counts_reverse_complement() -> None:
    ids, _ = TOKENIZER.encode("AAAACCCG")
    counts = MarkovCounts([ids], 1, both_strands=True)
    rc = reverse_complement(ids)
    assert TOKENIZER.decode(rc) == "CGGGTTTT"
    assert counts.raw[0].ravel().tolist() == [4, 4, 4, 4]  # A C G T over both strands
    assert counts.raw[1][0, 0] == 3 and counts.raw[1][3, 3] == 3  # AA forward, TT reverse


def test_real_genome_markov_beats_uniform(lambda_ids: np.ndarray) -> None:
    cut = 44000
    windows = [lambda_ids[i : i + 1025] for i in range(cut, len(lambda_ids) - 1, 1024)]
    result = evaluate_markov(MarkovCounts([lambda_ids[:cut]], 6, both_strands=True), windows)
    assert 1.9 < result.best_bits_per_base < 2.0
    assert result.scored_bases == sum(len(w) - 1 for w in windows)
