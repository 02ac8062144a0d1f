"""Checkpoints: a killed run resumes to the same state, half-written and corrupt checkpoints are
skipped, a full disk keeps the previous checkpoint, a different model is refused."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.errors import PipelineError
from pipeline.manifest import MANIFEST_FILE
from pipeline.pretrain import checkpoint as ckpt
from pipeline.pretrain.loop import run_pretraining

from .helpers import TINY, tiny_config

REPO = Path(__file__).resolve().parents[2]
LONG = ("train.max_steps=24", "eval.markov_max_order=0", "eval.every=8", "checkpoint.every=4")


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _launch(store: Path, out: Path) -> subprocess.Popen:
    sets = [a for s in [*TINY, *LONG] for a in ("--set", s)]
    command = [sys.executable, "-m", "pipeline.cli", "pretrain", "--store", str(store)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, "--out", str(out), "--device", "cpu", *sets],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"run ended before {path.name}: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.01)


def test_killed_run_resumes_to_the_same_state(lambda_store: Path, tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    process = _launch(lambda_store, killed)
    _wait_for(killed / "checkpoints" / "step-00000008", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it was killed"
    resumed_from = ckpt.newest_valid(killed)
    assert resumed_from is not None
    run_pretraining(tiny_config([lambda_store], *LONG), killed, device="cpu")

    reference = tmp_path / "reference"
    run_pretraining(tiny_config([lambda_store], *LONG), reference, device="cpu")
    got, want = _rows(killed), _rows(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for key in ("train_loss", "val_loss", "lr", "tokens"):
        values = [(r[key], w[key]) for r, w in zip(got, want, strict=True) if w[key] is not None]
        assert [g for g, _ in values] == pytest.approx([w for _, w in values], rel=1e-5), key
    final_got, final_want = _weights(killed / "model"), _weights(reference / "model")
    for name, tensor in final_want.items():
        torch.testing.assert_close(final_got[name], tensor, rtol=1e-4, atol=1e-6)


def test_sigterm_writes_a_checkpoint_and_exits_143(lambda_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = _launch(lambda_store, out)
    _wait_for(out / "checkpoints" / "step-00000004", process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    assert not (out / "summary.json").exists()
    newest = ckpt.newest_valid(out)
    stopped_at = ckpt.load_training_state(newest)["counters"]["step"]
    assert newest.name == ckpt.checkpoint_name(stopped_at) and stopped_at >= 4
    assert _rows(out)[-1]["step"] <= stopped_at
    summary = run_pretraining(tiny_config([lambda_store], *LONG), out, device="cpu")
    assert summary["steps"] == 24


@pytest.fixture
def run_with_checkpoints(lambda_store: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    config = tiny_config([lambda_store], "train.max_steps=8", "eval.markov_max_order=0")
    run_pretraining(config, out, device="cpu")
    return out


def test_half_written_and_corrupt_checkpoints_are_ignored(run_with_checkpoints: Path) -> None:
    root = run_with_checkpoints / "checkpoints"
    good = root / "step-00000008"
    shutil.copytree(good, root / ".step-00000020.tmp-999")  # an interrupted write
    shutil.copytree(good, root / "step-00000016")
    (root / "step-00000016" / MANIFEST_FILE).unlink()  # killed before the manifest
    shutil.copytree(good, root / "step-00000012")
    state = root / "step-00000012" / ckpt.STATE_FILE
    state.write_bytes(state.read_bytes()[:100])  # truncated file
    assert ckpt.checkpoint_problem(root / "step-00000016") is not None
    assert "corrupt" in ckpt.checkpoint_problem(root / "step-00000012")
    assert ckpt.resolve_resume(run_with_checkpoints, "auto") == good
    with pytest.raises(PipelineError, match="not a valid checkpoint"):
        ckpt.resolve_resume(run_with_checkpoints, str(root / "step-00000012"))


def test_full_disk_keeps_previous_checkpoint(
    lambda_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    calls = []

    def fill_disk(obj: object, path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: half a file, then the disk is full
            Path(path).write_bytes(b"\0" * 64)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(obj, path)

    monkeypatch.setattr(ckpt.torch, "save", fill_disk)
    out = tmp_path / "run"
    config = tiny_config([lambda_store], "train.max_steps=12", "eval.markov_max_order=0")
    with pytest.raises(PipelineError, match=r"no space left on device.*step-00000004 is intact"):
        run_pretraining(config, out, device="cpu")
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000004"]  # no partial folder
    assert ckpt.checkpoint_problem(root / "step-00000004") is None
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    summary = run_pretraining(config, out, device="cpu")  # resumes from step 4
    assert summary["steps"] == 12


def test_other_model_config_is_refused(run_with_checkpoints: Path, lambda_store: Path) -> None:
    config = tiny_config([lambda_store], "train.max_steps=8", "model.d_model=64")
    with pytest.raises(PipelineError, match=r"another model config \(d_model 32 in the checkpoint"):
        run_pretraining(config, run_with_checkpoints, device="cpu")


def test_resume_never_refuses_existing_checkpoints(
    run_with_checkpoints: Path, lambda_store: Path, tmp_path: Path
) -> None:
    config = tiny_config([lambda_store], "train.max_steps=10", "eval.markov_max_order=0")
    with pytest.raises(PipelineError, match="--resume auto to continue"):
        run_pretraining(config, run_with_checkpoints, resume="never", device="cpu")
    start = run_with_checkpoints / "checkpoints" / "step-00000004"
    summary = run_pretraining(config, tmp_path / "branch", resume=str(start), device="cpu")
    assert summary["steps"] == 10
    assert _rows(tmp_path / "branch")[0]["step"] == 6  # continued after step 4


def test_resume_carries_the_weight_average(lambda_store: Path, tmp_path: Path) -> None:
    """A run resumed from its step-8 checkpoint saves the same averaged weights as the run that
    went straight through, and those are the average, not the last trained weights."""
    sets = ("eval.markov_max_order=0", "optim.ema_decay=0.9")
    straight = tmp_path / "straight"
    summary = run_pretraining(tiny_config([lambda_store], *sets), straight, device="cpu")
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-00000012")
    shutil.rmtree(resumed / "model")
    (resumed / "summary.json").unlink()
    run_pretraining(tiny_config([lambda_store], *sets), resumed, device="cpu")
    want, got = _weights(straight / "model"), _weights(resumed / "model")
    assert all(torch.allclose(got[k], want[k], rtol=1e-5, atol=1e-7) for k in want)
    last = _weights(straight / "checkpoints" / "step-00000012")
    assert any(not torch.allclose(last[k], want[k]) for k in want)
    gain = summary["weight_average"]
    assert gain["ema_decay"] == 0.9
    assert gain["eval_bits_per_base"] != gain["eval_bits_per_base_last_weights"]
