"""The training loop on a tiny model: outputs, metrics, schedules, equivalences, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.pretrain.config import load_config
from pipeline.pretrain.loop import pool_evaluations, run_pretraining
from pipeline.pretrain.metrics import COLUMNS
from titans_dna.models.lm import TitansLM
from titans_dna.tokenizer import DNATokenizer

from .helpers import TINY, assert_same_trajectory, tiny_config


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(lambda_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "pretrain"
    run_pretraining(tiny_config([lambda_store]), out, device="cpu")
    return out


def test_outputs_of_a_run(finished: Path) -> None:
    model = TitansLM.from_pretrained(finished / "model")
    assert model.config.d_model == 32
    assert DNATokenizer.load(finished / "model" / "tokenizer.json").vocab_size == 10
    assert (finished / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = sorted(p.name for p in (finished / "checkpoints").iterdir())
    assert steps == ["step-00000004", "step-00000008", "step-00000012"]
    resolved = load_config(finished / "config.yaml")
    assert resolved.train.max_steps == 12 and resolved.model_config().d_model == 32
    assert yaml.safe_load((finished / "config.yaml").read_text())["model"]["preset"] == "tiny"


def test_metrics_files(finished: Path) -> None:
    rows = _rows(finished)
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert all(r["tokens"] == r["step"] * 4 * 128 and r["context"] == 128 for r in rows)
    val = [r for r in rows if r["val_bits_per_base"] is not None]
    assert [r["step"] for r in val] == [6, 12]
    assert all(r["val_bits_per_base"] == pytest.approx(r["val_loss"] / math.log(2)) for r in val)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns
    lines = (finished / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == list(COLUMNS) and len(lines) == 1 + len(rows)


def test_summary(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["tokens"] == 12 * 512
    assert summary["val_bits_per_base"] == pytest.approx(_rows(finished)[-1]["val_bits_per_base"])
    assert summary["val_scored_bases"] == summary["val_bases"] - 1  # every held-out base but one
    assert summary["tokens_per_s"] > 0 and summary["wall_s"] > 0
    assert summary["markov"]["best_order"] in range(4)
    assert summary["beats_markov"] == (
        summary["val_bits_per_base"] < summary["markov"]["bits_per_base"]
    )
    # one genome: its own held-out bits/base are the run's
    by_genome = summary["val_bits_per_base_by_genome"]
    assert by_genome == {"lambda": pytest.approx(summary["val_bits_per_base"], rel=1e-12)}


def test_held_out_parts_pool_by_scored_bases() -> None:
    loss, bits, count = pool_evaluations([(1.0, 1.0 / math.log(2), 100), None, (2.0, 0.0, 300)])
    assert count == 400 and loss == pytest.approx(1.75)
    assert bits == pytest.approx(1.75 / math.log(2))
    assert pool_evaluations([None]) is None


def test_grad_accumulation_and_checkpointing_match_plain_steps(
    lambda_store: Path, tmp_path: Path
) -> None:
    short = ("train.max_steps=4", "train.log_every=1", "eval.markov_max_order=0")
    runs = {
        "plain": (),
        "accum": ("train.grad_accum=2",),
        "recompute": ("train.activation_checkpointing=true",),
    }
    rows = {}
    for name, sets in runs.items():
        run_pretraining(tiny_config([lambda_store], *short, *sets), tmp_path / name, device="cpu")
        rows[name] = _rows(tmp_path / name)
    assert_same_trajectory(rows["accum"], rows["plain"])
    assert_same_trajectory(rows["recompute"], rows["plain"])


def test_sequence_length_warmup(lambda_store: Path, tmp_path: Path) -> None:
    config = tiny_config(
        [lambda_store],
        "train.seqlen_warmup_start=32",
        "train.seqlen_warmup_steps=2",
        "train.max_steps=6",
        "train.log_every=1",
        "eval.markov_max_order=0",
    )
    run_pretraining(config, tmp_path / "run", device="cpu")
    rows = _rows(tmp_path / "run")
    assert [(r["context"], r["batch_size"]) for r in rows] == [
        (32, 16),
        (32, 16),
        (64, 8),
        (64, 8),
        (128, 4),
        (128, 4),
    ]
    assert rows[-1]["tokens"] == 6 * 512


def test_time_budget_stops_early_with_outputs(lambda_store: Path, tmp_path: Path) -> None:
    config = tiny_config([lambda_store], "train.max_minutes=1e-6", "eval.markov_max_order=0")
    summary = run_pretraining(config, tmp_path / "run", device="cpu")
    assert summary["stopped_early"] and summary["steps"] < 12
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_cli_runs_and_reports_bad_store(
    lambda_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sets = [
        a for s in [*TINY, "train.max_steps=2", "eval.markov_max_order=0"] for a in ("--set", s)
    ]
    out = tmp_path / "cli"
    assert main(["pretrain", "--store", str(lambda_store), "--out", str(out), *sets]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    junk = tmp_path / "junk.h5"
    junk.write_text("text\n")
    code = main(["pretrain", "--store", str(junk), "--out", str(tmp_path / "bad"), *sets])
    assert code == 3
    assert "titans-dna pretrain: error:" in capsys.readouterr().err


def test_context_longer_than_genome_is_clear(lambda_store: Path, tmp_path: Path) -> None:
    config = tiny_config([lambda_store], "train.context=65536")
    with pytest.raises(PipelineError, match="longer than every contig's training part"):
        run_pretraining(config, tmp_path / "run", device="cpu")


def test_missing_output_parent(lambda_store: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="does not exist"):
        run_pretraining(tiny_config([lambda_store]), tmp_path / "no" / "run", device="cpu")


def test_weights_are_finite_after_training(finished: Path) -> None:
    model = TitansLM.from_pretrained(finished / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_gradients_stop_before_the_update(
    lambda_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.pretrain import loop

    monkeypatch.setattr(loop.Trainer, "_clip", lambda self: float("nan"))
    with pytest.raises(PipelineError, match="non-finite gradients at step 1 "):
        run_pretraining(tiny_config([lambda_store]), tmp_path / "run", device="cpu")
    assert not (tmp_path / "run" / "checkpoints").exists()


def record_stream_positions(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The stream position of the state each training forward pass starts from (None: fresh)."""
    positions: list[int | None] = []
    forward = TitansLM.forward

    def spy(self, tokens, state=None):
        if self.training:
            positions.append(None if state is None else state.position)
        return forward(self, tokens, state)

    monkeypatch.setattr(TitansLM, "forward", spy)
    return positions


def test_streams_carry_the_state_from_window_to_window(
    lambda_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    positions = record_stream_positions(monkeypatch)
    config = tiny_config(
        [lambda_store], "train.stream_windows=3", "train.max_steps=6", "eval.markov_max_order=0"
    )
    run_pretraining(config, tmp_path / "run", device="cpu")
    assert positions == [None, 128, 256, None, 128, 256]
    positions.clear()
    config = tiny_config(
        [lambda_store], "train.stream_windows=2", "train.stream_interleave=2",
        "train.max_steps=6", "eval.markov_max_order=0",
    )  # fmt: skip
    run_pretraining(config, tmp_path / "mixed", device="cpu")
    assert positions == [None, None, 128, 128, None, None]  # two groups of streams take turns


def test_resume_inside_a_stream_replays_its_windows(
    lambda_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    sets = ("train.stream_windows=3", "eval.markov_max_order=0", "checkpoint.every=4")
    out = tmp_path / "run"
    run_pretraining(tiny_config([lambda_store], *sets, "train.max_steps=4"), out, device="cpu")
    positions = record_stream_positions(monkeypatch)
    with caplog.at_level("INFO"):
        run_pretraining(tiny_config([lambda_store], *sets, "train.max_steps=6"), out, device="cpu")
    assert "replaying 1 window(s)" in caplog.text
    assert positions == [128, 256]  # steps 4 and 5 continue the stream step 3 began


def test_streams_need_aligned_contexts(lambda_store: Path) -> None:
    with pytest.raises(PipelineError, match="multiples of 64"):
        tiny_config([lambda_store], "train.stream_windows=2", "train.context=96")


def test_learning_rate_decays_with_the_time_budget(
    lambda_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget that ends the run long before train.max_steps still anneals the learning rate
    to its floor by the end (a clock that advances one second per reading keeps this exact)."""
    clock = iter(range(10**9))
    monkeypatch.setattr("pipeline.pretrain.loop.time.monotonic", lambda: float(next(clock)))
    config = tiny_config(
        [lambda_store], "train.max_steps=100000", "train.max_minutes=2", "train.log_every=1"
    )
    summary = run_pretraining(config, tmp_path / "run", device="cpu")
    lrs = [r["lr"] for r in _rows(tmp_path / "run") if "lr" in r]
    assert summary["stopped_early"] and 5 < summary["steps"] < 100
    floor = config.optim.lr * config.optim.min_lr_ratio
    assert lrs[-1] < floor * 1.2
    decaying = lrs[config.optim.warmup_steps :]
    assert decaying == sorted(decaying, reverse=True)
