"""A user's files are never replaced: output folders are replaced only when titans-dna wrote
them, an existing file is never swapped for a folder, and a failed run leaves no folder."""

from __future__ import annotations

from pathlib import Path

from .conftest import cli, leftovers

FAST = ("--epochs", "1", "--no-probe-candidate", "--no-strand-check", "--device", "cpu")


def finetune(task: Path, out: Path, checkpoint: Path):
    return cli("finetune", "--task", task, "--checkpoint", checkpoint, "--out", out, *FAST)


def test_finetune_refuses_a_user_folder(task: Path, checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious\n")
    finetune(task, folder, checkpoint).one_line_error(str(folder), "left untouched")
    assert (folder / "notes.txt").read_text() == "precious\n"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_finetune_refuses_the_task_folder(task: Path, checkpoint: Path) -> None:
    before = sorted(p.name for p in task.iterdir())
    finetune(task, task, checkpoint).one_line_error("left untouched")
    assert sorted(p.name for p in task.iterdir()) == before


def test_finetune_never_replaces_a_file(task: Path, checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    finetune(task, target, checkpoint).one_line_error("is a file")
    assert target.read_text() == "keep me\n"
    assert leftovers(tmp_path) == []


def test_finetune_replaces_its_own_output(task: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    assert finetune(task, out, checkpoint).returncode == 0
    first = (out / "metrics.json").stat().st_mtime_ns
    assert finetune(task, out, checkpoint).returncode == 0
    assert (out / "metrics.json").stat().st_mtime_ns != first
    assert leftovers(tmp_path) == []


def test_pretrain_out_onto_a_file(tmp_path: Path) -> None:
    target = tmp_path / "run.txt"
    target.write_text("x\n")
    cli("pretrain", "--store", tmp_path / "none.h5", "--out", target).one_line_error("is a file")
    assert target.read_text() == "x\n"


def test_pretrain_that_fails_early_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cli("pretrain", "--store", tmp_path / "absent.h5", "--out", out).one_line_error("absent.h5")
    assert not out.exists()
