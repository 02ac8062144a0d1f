"""Windows from token stores: weights, strands, N, soft-mask, the held-out split, determinism."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.pretrain.config import DataSection, OptimSection, TrainSection
from pipeline.pretrain.data import Corpus, target_weights
from pipeline.pretrain.schedule import lr_factor, stage, stream_position
from pipeline.tokenstore import write_token_store
from titans_dna.tokenizer import N_ID, SEP_ID, DNATokenizer

from .helpers import write_fasta

TOKENIZER = DNATokenizer()


def _corpus(stores: list[Path], seed: int = 0, **data: object) -> Corpus:
    return Corpus(DataSection(stores=[str(s) for s in stores], **data), seed=seed)


def _store_fraction(corpus: Corpus, length: int, draws: int) -> float:
    stores = [corpus.tracks[corpus.draw_window(0, i, length).track].store for i in range(draws)]
    return float(np.mean(np.array(stores) == 0))


def test_per_store_weights(lambda_store: Path, split_store: Path) -> None:
    corpus = _corpus([lambda_store, split_store], weights=[3.0, 1.0])
    assert _store_fraction(corpus, 257, 600) == pytest.approx(0.75, abs=0.07)


def test_by_length_every_start_equally_likely(lambda_store: Path, split_store: Path) -> None:
    corpus = _corpus([lambda_store, split_store], val_fraction=0.5)
    starts = [sum(t.length - 2048 + 1 for t in corpus.tracks if t.store == s) for s in (0, 1)]
    expected = starts[0] / sum(starts)  # 1 contig of 24 kbp vs 3 of 8 kbp: ~0.54
    assert _store_fraction(corpus, 2048, 600) == pytest.approx(expected, abs=0.07)


def test_reverse_complement_augmentation(lambda_store: Path) -> None:
    corpus = _corpus([lambda_store])
    drawn = [corpus.draw_window(1, i, 65) for i in range(200)]
    reversed_ = [d for d in drawn if d.reverse]
    assert 0.35 < len(reversed_) / len(drawn) < 0.65
    for d in reversed_[:5]:
        forward, _ = corpus.read_track(corpus.tracks[d.track], d.offset, 65, reverse=False)
        np.testing.assert_array_equal(d.ids, TOKENIZER.reverse_complement(forward))
    plain = _corpus([lambda_store], rc_augment=False)
    assert not any(plain.draw_window(1, i, 65).reverse for i in range(100))


def test_n_dominated_windows_are_skipped(split_store: Path) -> None:
    corpus = _corpus([split_store], max_n_fraction=0.5, val_fraction=0.0)
    fractions = [np.mean(corpus.draw_window(2, i, 1025).ids == N_ID) for i in range(400)]
    assert max(fractions) <= 0.5
    assert any(f > 0 for f in fractions)  # the N block is sampled, only N-dominated ones skipped
    strict = _corpus([split_store], max_n_fraction=0.0, val_fraction=0.0)
    assert all(not np.any(strict.draw_window(2, i, 1025).ids == N_ID) for i in range(200))


def test_all_n_store_is_a_clear_error(tmp_path: Path) -> None:
    fasta = write_fasta(tmp_path / "n.fa", {"gap": "N" * 3000})
    write_token_store([fasta], tmp_path / "n.h5")
    corpus = _corpus([tmp_path / "n.h5"])
    with pytest.raises(PipelineError, match=r"n\.h5: no window of 129 tokens with at most 50% N"):
        corpus.train_batch(0, 2, 128, range(2))


def test_softmask_and_n_target_weights(split_store: Path) -> None:
    corpus = _corpus([split_store], softmask_weight=0.1, val_fraction=0.0)
    middle = next(
        t for t in corpus.tracks if corpus.stores[0].contigs[t.pieces[0].contig].name == "middle"
    )
    soft_window = corpus.read_track(middle, 1990, 21, reverse=False)  # 2000.. is soft-masked
    n_window = corpus.read_track(middle, 7995, 11, reverse=False)  # 8000.. is N
    batch = corpus.make_batch([soft_window, n_window])
    weights = batch.weights.numpy()
    np.testing.assert_allclose(weights[0, :9], 1.0)  # targets at 1991..1999
    np.testing.assert_allclose(weights[0, 9:20], 0.1)  # targets at 2000..2010
    np.testing.assert_allclose(weights[1, :4], 1.0)  # targets at 7996..7999
    np.testing.assert_allclose(weights[1, 4:10], 0.0)  # N targets never predicted
    np.testing.assert_allclose(weights[1, 10:], 0.0)  # padding beyond the shorter window
    assert batch.inputs.shape == batch.targets.shape == (2, 20)


def test_target_weights_unit() -> None:
    targets = np.array([[5, 6, 7, 8, 9, 0, 2]])
    soft = np.array([[False, True, False, True, True, False, False]])
    weights = target_weights(targets, soft, 0.25)
    assert weights.tolist() == [[1.0, 0.25, 1.0, 0.25, 0.0, 0.0, 0.0]]


def test_training_windows_never_touch_held_out_region(split_store: Path) -> None:
    corpus = _corpus([split_store], val_fraction=0.1, val_contigs=["right"])
    names = {p.contig: corpus.stores[0].contigs[p.contig].name for p in corpus.val_pieces}
    assert sorted(names.values()) == ["left", "middle", "right"]
    right = next(p for p in corpus.val_pieces if names[p.contig] == "right")
    assert (right.start, right.end) == (0, 16000)  # a held-out contig is held out whole
    held = {(p.contig, p.start, p.end) for p in corpus.val_pieces}
    for i in range(500):
        d = corpus.draw_window(5, i, 513)
        (piece,) = corpus.tracks[d.track].pieces
        lo, hi = piece.start + d.offset, piece.start + d.offset + 513
        assert piece.start <= lo and hi <= piece.end
        assert all(not (c == piece.contig and lo < e and s < hi) for c, s, e in held)
    windows = corpus.val_windows(512, None)
    assert sum(w.length - 1 for w in windows) == corpus.val_bases - len(corpus.val_pieces)
    assert all(
        any(w.contig == c and s <= w.start and w.end <= e for c, s, e in held) for w in windows
    )


def test_unknown_held_out_contig(split_store: Path) -> None:
    with pytest.raises(PipelineError, match="contig 'chrZ' is in none of"):
        _corpus([split_store], val_contigs=["chrZ"])


def test_sampler_is_deterministic_and_rank_slices_match(lambda_store: Path) -> None:
    corpus = _corpus([lambda_store])
    whole = corpus.train_batch(7, 8, 128, range(8))
    parts = [corpus.train_batch(7, 8, 128, range(r * 4, r * 4 + 4)) for r in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([p.inputs for p in parts]), whole.inputs)
    again = _corpus([lambda_store]).train_batch(7, 8, 128, range(8))
    np.testing.assert_array_equal(again.inputs, whole.inputs)
    assert not np.array_equal(corpus.train_batch(8, 8, 128, range(8)).inputs, whole.inputs)
    other_seed = _corpus([lambda_store], seed=1).train_batch(7, 8, 128, range(8))
    assert not np.array_equal(other_seed.inputs, whole.inputs)


def test_context_longer_than_every_contig(lambda_store: Path, split_store: Path) -> None:
    with pytest.raises(PipelineError, match=r"train\.context 60000 is longer than every contig"):
        _corpus([lambda_store]).check_context(60000)
    with pytest.raises(PipelineError, match="cross_contig"):
        _corpus([split_store]).check_context(20000)


def test_cross_contig_windows_join_contigs_with_sep(split_store: Path) -> None:
    corpus = _corpus([split_store], cross_contig=True, rc_augment=False, val_fraction=0.0)
    corpus.check_context(40000)  # three contigs of 16 kbp joined
    (track,) = corpus.tracks
    ids, _ = corpus.read_track(track, 15990, 21, reverse=False)
    assert ids[10] == SEP_ID and np.all(ids[:10] != SEP_ID) and np.all(ids[11:] != SEP_ID)
    batch = corpus.make_batch([(ids, np.zeros(21, bool))])
    assert batch.weights[0, 9] == 0.0  # the [SEP] target is not predicted
    with pytest.raises(PipelineError, match="longer than every contig"):
        corpus.check_context(50000)


def test_empty_and_unreadable_stores(tmp_path: Path) -> None:
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(PipelineError, match=r"empty\.h5"):
        _corpus([empty])
    junk = tmp_path / "junk.h5"
    junk.write_text("not a token store\n")
    with pytest.raises(PipelineError, match=r"junk\.h5"):
        _corpus([junk])
    with pytest.raises(PipelineError, match=r"absent\.h5"):
        _corpus([tmp_path / "absent.h5"])


def test_sequence_length_warmup_keeps_tokens_per_step() -> None:
    train = TrainSection(
        context=1024, batch_size=4, seqlen_warmup_start=256, seqlen_warmup_steps=10
    )
    assert [stage(s, train) for s in (0, 9, 10, 20, 35, 1000)] == [
        (256, 16),
        (256, 16),
        (512, 8),
        (1024, 4),
        (1024, 4),
        (1024, 4),
    ]
    assert stage(5, TrainSection(context=512, batch_size=2)) == (512, 2)


def test_stream_positions_restart_at_every_stage() -> None:
    train = TrainSection(context=1024, batch_size=4, stream_windows=3)
    assert [stream_position(s, train)[:2] for s in range(7)] == [
        (0, 0), (0, 1), (0, 2), (3, 0), (3, 1), (3, 2), (6, 0)
    ]  # fmt: skip
    # two groups take turns: group 0 reads at steps 0, 2, 4, group 1 at 1, 3, 5
    mixed = TrainSection(context=1024, batch_size=4, stream_windows=3, stream_interleave=2)
    assert [stream_position(s, mixed) for s in range(8)] == [
        (0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1), (0, 2, 0), (1, 2, 1), (6, 0, 0), (7, 0, 1)
    ]  # fmt: skip
    warm = TrainSection(
        context=1024, batch_size=4, seqlen_warmup_start=256, seqlen_warmup_steps=4,
        stream_windows=3,
    )  # fmt: skip
    # stages start at steps 0, 4 and 8 (the final context); streams restart with each
    assert [stream_position(s, warm)[0] for s in range(14)] == [
        0, 0, 0, 3, 4, 4, 4, 7, 8, 8, 8, 11, 11, 11
    ]  # fmt: skip


def test_stream_windows_continue_one_stretch(lambda_store: Path) -> None:
    corpus = _corpus([lambda_store])
    context, windows = 64, 4
    batches = [corpus.train_batch(0, 2, context, range(2), (0, j, windows)) for j in range(windows)]
    for before, after in itertools.pairwise(batches):
        # the first input of a window is the last target of the one before
        assert torch.equal(after.inputs[:, 0], before.targets[:, -1])
    stretch = [corpus.draw_window(0, row, windows * context + 1).ids for row in range(2)]
    joined = torch.cat([b.inputs for b in batches], 1)
    assert torch.equal(joined, torch.from_numpy(np.stack(stretch)[:, :-1].astype(np.int64)))
    other = corpus.train_batch(4, 2, context, range(2), (4, 0, windows))
    assert not torch.equal(other.inputs, batches[0].inputs)  # a new stream, a new stretch


def test_planted_repeats_copy_a_segment_and_score_only_the_second(lambda_store: Path) -> None:
    corpus = _corpus([lambda_store], plant_repeats=0.5, repeat_segment=20, repeat_distance=[40, 60])
    plain = _corpus([lambda_store])
    batch, original = (
        corpus.train_batch(3, 64, 128, range(64)),
        plain.train_batch(3, 64, 128, range(64)),
    )
    planted = 0
    for row in range(64):
        changed = np.flatnonzero(batch.inputs[row].numpy() != original.inputs[row].numpy())
        if changed.size == 0:
            assert torch.equal(batch.weights[row], original.weights[row])
            continue
        planted += 1
        ids = torch.cat([batch.inputs[row], batch.targets[row, -1:]]).numpy()
        unscored = np.flatnonzero(batch.weights[row].numpy() == 0) + 1  # target t is input t + 1
        first = unscored[unscored < 128][:20]
        assert first.size == 20 and np.all(np.diff(first) == 1)
        fits = [d for d in range(40, 61) if first[-1] + d < len(ids)]
        second = [d for d in fits if np.array_equal(ids[first], ids[first + d])]
        assert second, "the second copy lies 40..60 bases after the first"
        assert np.all(batch.weights[row].numpy()[first[0] + second[0] - 1 :][:20] == 1.0)
        assert changed.min() >= first[0] and changed.max() < first[-1] + second[0] + 1
    assert 16 < planted < 48
    again = corpus.train_batch(3, 64, 128, range(64))
    assert torch.equal(again.inputs, batch.inputs)  # a pure function of the step


def test_planted_repeats_keep_a_stream_exact(lambda_store: Path) -> None:
    corpus = _corpus([lambda_store], plant_repeats=1.0, repeat_segment=20, repeat_distance=[40, 43])
    batches = [corpus.train_batch(0, 2, 64, range(2), (0, j, 4)) for j in range(4)]
    for before, after in itertools.pairwise(batches):
        assert torch.equal(after.inputs[:, 0], before.targets[:, -1])


def test_lr_factor_follows_steps_or_the_time_budget_whichever_is_further() -> None:
    optim = OptimSection(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(4, optim, 100) == pytest.approx(0.5)
    assert lr_factor(54, optim, 100) == pytest.approx(0.55)
    assert lr_factor(99, optim, 100) == pytest.approx(0.1)
    assert lr_factor(54, optim, 100, time_done=0.25) == pytest.approx(0.55)
    assert lr_factor(20, optim, 100_000, time_done=0.5) == pytest.approx(0.55, abs=1e-4)
    assert lr_factor(20, optim, 100_000, time_done=1.5) == pytest.approx(0.1)
