"""Labelled task loading: GUE CSV, labelled FASTA, BED + genome, label mapping, dev hold-out."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.io.tasks import load_task

from .conftest import write_split


def test_gue_csv_task(gue_slice) -> None:
    task = load_task(gue_slice("prom_core_all", train=100, dev=30, test=30))
    assert task.label_names == ["0", "1"]
    assert (len(task.train), len(task.dev), len(task.test)) == (100, 30, 30)
    assert not task.dev_held_out
    assert task.train.ids[0] == "train:1"
    assert all(len(s) == 70 and s.dtype == np.uint8 for s in task.train.sequences)
    assert set(np.unique(task.train.labels)) == {0, 1}


def test_missing_dev_holds_out_a_seeded_stratified_tenth(gue_slice) -> None:
    folder = gue_slice("prom_core_all", train=200, dev=0, test=20)
    first, again, other = (load_task(folder, seed=s) for s in (3, 3, 4))
    assert first.dev_held_out and len(first.dev) == 20 and len(first.train) == 180
    assert first.dev.ids == again.dev.ids
    assert first.dev.ids != other.dev.ids
    assert not set(first.dev.ids) & set(first.train.ids)
    counts = np.bincount(first.dev.labels)
    assert counts.min() >= 8  # both classes present, roughly balanced
    assert first.test.ids[0] == "test:1"


def test_labelled_fasta_both_header_syntaxes(tmp_path: Path) -> None:
    train = ">a label=promoter\nACGTAC\n>b|background\nTTGACA\n>c extra words label=promoter\nGGG\n"
    train += ">d|background\nCCCATG\n"
    (tmp_path / "train.fa").write_text(train)
    with gzip.open(tmp_path / "test.fasta.gz", "wt") as handle:
        handle.write(">t1 label=background\nACGTNN\n>t2|promoter\nacgt\n")
    task = load_task(tmp_path)
    assert task.label_names == ["background", "promoter"]
    assert sorted(task.train.ids + task.dev.ids) == ["a", "b", "c", "d"]
    assert task.test.ids == ["t1", "t2"]
    assert task.test.labels.tolist() == [0, 1]
    assert task.dev_held_out and len(task.dev) == 2


def test_integer_labels_sort_numerically_and_floats_normalise(tmp_path: Path) -> None:
    rows = [("ACGT", "10"), ("ACGA", "2"), ("ACGC", "2.0"), ("AGGT", "10"), ("TTTT", "2")]
    write_split(tmp_path / "train.csv", [*rows, ("CCCC", "10")])
    task = load_task(tmp_path)
    assert task.label_names == ["2", "10"]
    assert task.label_map()["label2id"] == {"2": 0, "10": 1}


def test_mixed_sequence_lengths_load(tmp_path: Path) -> None:
    rows = [("A" * n, str(n % 2)) for n in (5, 50, 500, 7, 80, 9, 1000, 12)]
    write_split(tmp_path / "train.csv", rows)
    task = load_task(tmp_path)
    lengths = sorted(len(s) for s in task.train.sequences + task.dev.sequences)
    assert lengths == [5, 7, 9, 12, 50, 80, 500, 1000]


def test_bed_task_with_genome(shared_data: Path, tmp_path: Path) -> None:
    genome = shared_data / "fixtures" / "ce.fa"
    lines = [
        f"CHROMOSOME_I\t{s}\t{s + 60}\t{'up' if s % 2000 else 'down'}\t0\t+"
        for s in range(0, 8000, 500)
    ]
    lines.append("CHROMOSOME_I\t100\t160\tup\t0\t-")
    (tmp_path / "train.bed").write_text("track name=x\n" + "\n".join(lines) + "\n")
    task = load_task(tmp_path, genome=genome)
    every = task.train.ids + task.dev.ids
    assert "CHROMOSOME_I:101-160(-)" in every
    assert task.label_names == ["down", "up"]
    assert all(len(s) == 60 for s in task.train.sequences)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"train.csv": "sequence\nACGT\n"}, "no 'label' column"),
        ({"train.csv": "sequence,label\nACGT,1\nACGA,\n"}, "row 2 has an empty label"),
        ({"train.csv": "sequence,label\nACGT,1\nACGA\n"}, "row 2 has 1 fields"),
        ({"train.csv": "sequence,label\nACGT,0.5\nACGA,1\n"}, "non-integer number"),
        ({"train.csv": "sequence,label\nACGT,1\nACGA,1\n"}, "single class '1'"),
        (
            {"train.csv": "sequence,label\nACGT,0\nACGA,1\n", "test.csv": "sequence,label\nA,2\n"},
            "label '2' of test:1 never appears in the training set",
        ),
        ({"dev.csv": "sequence,label\nACGT,0\n"}, "no train split"),
        ({"train.fa": ""}, "empty FASTA"),
        ({"train.fa": ">a\nACGT\n>b|1\nACGT\n"}, "record a has no label"),
        ({"train.csv": "sequence,label\nAC1T,0\nACGA,1\n"}, "train.csv"),
        ({"train.csv": "x", "train.fa": ">a|1\nA\n"}, "several files for the train split"),
        ({"train.bed": "I\t0\t10\tup\n"}, "needs the genome"),
    ],
)
def test_bad_task_inputs_fail_with_one_line_naming_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(PipelineError) as error:
        load_task(tmp_path)
    text = str(error.value)
    assert message in text
    assert "\n" not in text
    assert str(tmp_path) in text
