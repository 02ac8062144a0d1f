"""Long-context measurements: streamed scores, the memory reset, planted repeats, natural
repeats, the curve's blocks, and the `titans-dna long-context` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.cli import main
from pipeline.longcontext.curve import block_starts
from pipeline.longcontext.recall import planted_rows
from pipeline.longcontext.repeats import repeat_positions
from pipeline.longcontext.streams import stream_log2p
from pipeline.report.html import ReportInputs, write_report
from titans_dna.models import TitansConfig, TitansLM
from titans_dna.tokenizer import A_ID, N_ID

SIZES = dict(d_model=16, n_layers=2, n_heads=2, chunk_size=8, segment_len=16, window=16)


def _model(variant: str) -> TitansLM:
    torch.manual_seed(0)
    return TitansLM(TitansConfig.preset("tiny", variant=variant, **SIZES)).eval()


def _tokens(batch: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(A_ID, A_ID + 4, (batch, length))


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_streamed_scores_equal_one_pass(variant: str) -> None:
    lm, ids = _model(variant), _tokens(2, 100)
    got = stream_log2p(lm, ids, piece_len=32, score_from=5)
    with torch.no_grad():
        logp = F.log_softmax(lm(torch.from_numpy(ids))[0].double(), -1)
    want = logp[:, :-1].gather(-1, torch.from_numpy(ids)[:, 1:, None])[..., 0] / math.log(2)
    np.testing.assert_allclose(got, want[:, 4:].numpy(), atol=1e-5)


def test_memory_reset_starts_afresh() -> None:
    # LMM has no attention: after a reset its state is exactly a fresh stream's
    lm, ids = _model("lmm"), _tokens(1, 96, seed=3)
    reset = stream_log2p(lm, ids, piece_len=16, reset_every=48)
    fresh = stream_log2p(lm, ids[:, 48:], piece_len=16)
    np.testing.assert_allclose(reset[0, 48:], fresh[0], atol=1e-6)
    assert not np.allclose(stream_log2p(lm, ids, piece_len=16)[0, 48:], fresh[0], atol=1e-3)


def test_planted_copies_are_identical_and_in_place() -> None:
    background = np.full(5000, A_ID + 2, np.uint8)
    rows = planted_rows(background, 300, segment=50, lead=100, trials=3, seed=1)
    assert rows.shape == (3, 450)
    np.testing.assert_array_equal(rows[:, 100:150], rows[:, 400:450])
    assert (rows[:, :100] == A_ID + 2).all() and (rows[:, 150:400] == A_ID + 2).all()
    assert len({bytes(r[100:150]) for r in rows}) == 3  # a fresh segment per trial
    with pytest.raises(ValueError, match="shorter than the segment"):
        planted_rows(background, 40, segment=50, lead=100, trials=1, seed=1)


def test_repeat_positions_mark_distant_repeats_only() -> None:
    rng = np.random.default_rng(2)
    ids = rng.integers(A_ID, A_ID + 4, 400).astype(np.uint8)
    ids[300:330] = ids[20:50]  # a 30-base repeat 280 bases later
    ids[120:130] = N_ID
    mask = repeat_positions(ids, k=12, beyond=100)
    # position p + 1 is marked when ids[p - 11 .. p] occurred more than 100 bases earlier
    assert set(np.flatnonzero(mask).tolist()) == set(range(311, 330))
    assert not repeat_positions(ids, k=12, beyond=300).any()


def test_blocks_are_the_same_for_every_context_and_avoid_n() -> None:
    ids = np.full(20000, A_ID, np.uint8)
    ids[9000:9100] = N_ID
    starts = block_starts(ids, 4096, 512, 6)
    assert len(starts) == 6 and starts == sorted(starts)
    assert all(s >= 4096 and s + 512 <= 20000 for s in starts)
    assert all(not (ids[s - 4096 : s + 512] == N_ID).any() for s in starts)


def test_command_writes_json_and_the_report_plots_it(
    tmp_path: Path, shared_data: Path, capsys
) -> None:
    checkpoint = tmp_path / "model"
    torch.manual_seed(0)
    TitansLM(TitansConfig.preset("tiny", **SIZES)).save_pretrained(checkpoint)
    out = tmp_path / "lc.json"
    args = [
        "long-context", str(shared_data / "genomes" / "lambda_phage.fa.gz"), "--checkpoint",
        str(checkpoint), "-o", str(out), "--held-out", "1", "--contexts", "64", "256",
        "--distances", "512", "--block", "64", "--blocks", "2", "--trials", "2",
        "--repeat-window", "4096", "--repeat-windows", "1", "--reset-every", "128",
        "--piece-len", "64", "--device", "cpu",
    ]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert [p["context"] for p in result["curve"]["memory"]] == [64, 256]
    assert set(result["recall"]) == {"memory", "memory_reset"}
    assert result["recall"]["memory"][0]["first"] > 1.5  # a random segment, first seen
    report = tmp_path / "report.html"
    write_report(ReportInputs(long_context=out), report)
    text = report.read_text()
    assert (
        "<h2>Long context</h2>" in text and 'alt="context curve and planted-repeat recall"' in text
    )
    assert main(["long-context", str(out), "--checkpoint", str(checkpoint), "-o",
                 str(tmp_path / "x.json"), "--reset-every", "100"]) == 3  # fmt: skip
    assert "multiple of 16" in capsys.readouterr().err
