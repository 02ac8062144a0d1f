"""Full disks and read-only folders: one line naming the output, a non-zero exit, no traceback
or crash, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FullDisk, cli, leftovers

LAMBDA = "genomes/lambda_phage.fa.gz"
ECOLI = "genomes/ecoli_k12_mg1655.fa.gz"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, checkpoint: Path, shared_data: Path) -> Path:
    from .conftest import write_task

    folder = tmp_path_factory.mktemp("classifier")
    task = write_task(folder / "task", shared_data)
    out = folder / "ft"
    run = cli("finetune", "--task", task, "--checkpoint", checkpoint, "--out", out,
              "--epochs", "1", "--no-probe-candidate", "--no-strand-check")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return out


def commands(data: Path, checkpoint: Path, classifier: Path, task: Path, out: Path) -> dict:
    """Each command writing a few hundred KiB or more into folder `out`."""
    return {
        "tokenize": ("tokenize", data / ECOLI, "-o", out / "t.h5"),
        "embed": ("embed", data / LAMBDA, "--checkpoint", checkpoint, "-o", out / "e.h5",
                  "--per-token"),
        "likelihood": ("likelihood", data / LAMBDA, "--checkpoint", checkpoint,
                       "-o", out / "l.bedGraph"),
        "fetch": ("fetch", data / ECOLI, "-o", out / "e.fa.gz"),
        "finetune": ("finetune", "--task", task, "--checkpoint", checkpoint, "-o", out / "ft",
                     "--epochs", "1", "--no-probe-candidate", "--no-strand-check"),
        "predict": ("predict", data / "benchmarks/gue/mouse_0/train.csv",
                    "--checkpoint", classifier, "-o", out / "p.csv"),
        "pretrain": ("pretrain", "--store", classifier.parent / "store.h5", "--out", out / "run",
                     "--set", "model.d_model=32", "--set", "model.segment_len=64",
                     "--set", "model.chunk_size=32", "--set", "train.context=128",
                     "--set", "train.max_steps=4", "--set", "checkpoint.every=2",
                     "--set", "eval.markov_max_order=2"),
    }  # fmt: skip


NAMES = ["tokenize", "embed", "likelihood", "fetch", "finetune", "predict", "pretrain"]


@pytest.fixture(scope="module")
def store(classifier: Path, shared_data: Path) -> Path:
    path = classifier.parent / "store.h5"
    assert cli("tokenize", shared_data / LAMBDA, "-o", path).returncode == 0
    return path


@pytest.mark.parametrize("name", NAMES)
def test_full_disk(
    name: str, full_disk: FullDisk, shared_data: Path, checkpoint: Path, classifier: Path,
    task: Path, store: Path,
) -> None:  # fmt: skip
    args = commands(shared_data, checkpoint, classifier, task, full_disk.folder)[name]
    run = cli(*args, limit_bytes=full_disk.limit)
    reason = "no space left on device" if full_disk.limit is None else "file too large"
    run.one_line_error("cannot write", reason, code=4)
    assert leftovers(full_disk.folder) == []
    if name == "pretrain":  # no checkpoint was completed: nothing to resume, no folder
        assert not (full_disk.folder / "run").exists()


@pytest.mark.parametrize("name", NAMES)
def test_read_only_folder(
    name: str, read_only: Path, shared_data: Path, checkpoint: Path, classifier: Path,
    task: Path, store: Path,
) -> None:  # fmt: skip
    args = commands(shared_data, checkpoint, classifier, task, read_only)[name]
    cli(*args).one_line_error("cannot write in", str(read_only), code=4)
    assert list(read_only.iterdir()) == []
