"""Labelled sequence-classification tasks: loading, label mapping, and the held-out dev split.

A task is a folder holding a `train` split, an optional `dev` split and an optional `test` split,
each in one of three formats (the file name's stem is the split name):

- CSV, `train.csv` (GUE layout): a header with `sequence` and `label` columns, in any order,
  optionally an `id` column; other columns are ignored. Without `id`, an example's id is
  `<stem>:<row>` (row counted from 1 after the header).
- FASTA/FASTQ (`train.fa`, `.fasta`, `.fna`, `.fq`, `.fastq`, optionally `.gz`) with the label in
  each header, either as a `label=NAME` word in the description (`>seq1 label=promoter`) or after
  the last `|` of the id (`>seq1|promoter`, the id is then `seq1`). `label=` wins when both occur.
- BED (`train.bed`) plus an indexed genome FASTA (`genome=`): the name column (4th) carries the
  label, the strand column (6th, optional) is honoured; ids are `chrom:start-end(strand)`.

Labels are integers or strings. Integral numbers are normalised (`1.0` -> `1`) and sorted
numerically, other labels sort as text; a non-integral number (`0.37`) is rejected as a regression
target. Label ids follow that order, so GUE's 0/1 labels keep their values. Without a dev split a
seeded, stratified 10% of train is held out for model selection; test is never used to select.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError, input_error

SPLITS = ("train", "dev", "test")
CSV_SUFFIXES = (".csv", ".csv.gz")
FASTX_SUFFIXES = tuple(
    s + gz for s in (".fa", ".fasta", ".fna", ".fq", ".fastq") for gz in ("", ".gz")
)
BED_SUFFIXES = (".bed", ".bed.gz")
DEV_FRACTION = 0.1
# Spellings of a missing value (pandas, R): a label, never a class of its own.
MISSING_LABELS = frozenset({"nan", "na", "n/a", "null", "none"})
_LABEL_WORD = re.compile(r"(?:^|\s)label=(\S+)")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class RawExample:
    """One labelled example as read from a file, before tokenization and label mapping."""

    id: str
    sequence: bytes
    label: str | None


@dataclass
class LabelledSplit:
    """Tokenized examples of one split.

    sequences: token id arrays (uint8 [L_i], lengths may differ); labels: int64 [N] label ids.
    """

    source: str
    ids: list[str]
    sequences: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray, source: str) -> LabelledSplit:
        return LabelledSplit(
            source,
            [self.ids[i] for i in index],
            [self.sequences[i] for i in index],
            self.labels[index],
        )


@dataclass
class Task:
    """A loaded task: label names in id order and the three splits (test may be absent)."""

    path: Path
    label_names: list[str]
    train: LabelledSplit
    dev: LabelledSplit
    test: LabelledSplit | None
    dev_held_out: bool
    files: dict[str, Path]  # split name -> the file it was read from

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def label_map(self) -> dict[str, dict]:
        """The mapping saved as label_map.json: names to ids and back."""
        return {
            "label2id": {name: i for i, name in enumerate(self.label_names)},
            "id2label": {str(i): name for i, name in enumerate(self.label_names)},
        }


def load_task(path: str | Path, *, genome: str | Path | None = None, seed: int = 0) -> Task:
    """Load a task folder (see the module docstring); raise PipelineError on any bad input."""
    from titans_dna.tokenizer import DNATokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise input_error(folder, "task folder not found (expected a folder with train.csv)")
    files = {split: find_split_file(folder, split) for split in SPLITS}
    if files["train"] is None:
        raise input_error(
            folder, "no train split in the task folder (train.csv, train.fa[.gz] or train.bed)"
        )
    raw = {s: read_labelled(f, genome=genome) for s, f in files.items() if f is not None}
    label_names = _label_names(files["train"], raw["train"])
    tokenizer = DNATokenizer()
    splits = {
        s: _tokenize(files[s], examples, label_names, tokenizer) for s, examples in raw.items()
    }
    train, dev, held_out = splits["train"], splits.get("dev"), False
    if dev is None:
        train, dev = hold_out_dev(train, seed)
        held_out = True
    present = {split: path for split, path in files.items() if path is not None}
    return Task(folder, label_names, train, dev, splits.get("test"), held_out, present)


def split_checksums(task: Task) -> dict[str, dict[str, str]]:
    """{split: {"file": name, "sha256": hex}}: what identifies a task (the same splits under any
    folder name), recorded by finetune and matched by the report."""
    from pipeline.manifest import sha256_file

    files = task.files.items()
    return {split: {"file": path.name, "sha256": sha256_file(path)} for split, path in files}


def find_split_file(folder: Path, split: str) -> Path | None:
    """The one file in `folder` holding `split`, or None; two candidates are an error."""
    found = [
        folder / f"{split}{suffix}"
        for suffix in CSV_SUFFIXES + FASTX_SUFFIXES + BED_SUFFIXES
        if (folder / f"{split}{suffix}").is_file()
    ]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise input_error(folder, f"several files for the {split} split ({names}); keep one")
    return found[0] if found else None


def read_labelled(path: Path, *, genome: str | Path | None = None) -> list[RawExample]:
    """Read one labelled file (CSV, FASTA/FASTQ or BED by suffix); labels are required."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        examples = list(read_csv_examples(path, require_label=True))
    elif name.endswith(FASTX_SUFFIXES):
        examples = list(read_fastx_examples(path, require_label=True))
    elif name.endswith(BED_SUFFIXES):
        if genome is None:
            raise input_error(path, "a BED task needs the genome it indexes (--genome FASTA)")
        examples = read_bed_examples(path, genome)
    else:
        raise input_error(path, "unknown task file type (expected .csv, FASTA/FASTQ or .bed)")
    if not examples:
        raise input_error(path, "no examples (the file holds no sequences)")
    return examples


def read_csv_examples(path: str | Path, *, require_label: bool) -> Iterator[RawExample]:
    """Rows of a `sequence,label` CSV (header required; `label` optional when not required)."""
    path = Path(path)
    try:
        yield from _csv_rows(path, require_label)
    except (UnicodeDecodeError, csv.Error) as err:
        raise input_error(path, f"not a readable CSV text file ({err})") from None


def _csv_rows(path: Path, require_label: bool) -> Iterator[RawExample]:
    stem = Path(path.name.removesuffix(".gz")).stem
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise input_error(path, "empty CSV (expected a header with sequence,label)")
        columns = {name.strip().lower(): i for i, name in enumerate(header)}
        if "sequence" not in columns:
            raise input_error(path, f"no 'sequence' column in the header {','.join(header)}")
        if require_label and "label" not in columns:
            raise input_error(path, f"no 'label' column in the header {','.join(header)}")
        seq_col, label_col, id_col = columns["sequence"], columns.get("label"), columns.get("id")
        for row_number, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != len(header):
                raise input_error(
                    path, f"row {row_number} has {len(row)} fields, the header has {len(header)}"
                )
            label = None if label_col is None else row[label_col].strip()
            if require_label and not label:
                raise input_error(path, f"row {row_number} has an empty label")
            if label is not None and label.lower() in MISSING_LABELS:
                raise input_error(
                    path, f"row {row_number} has a missing label ({label!r}); remove the row"
                )
            example_id = row[id_col].strip() if id_col is not None else f"{stem}:{row_number}"
            yield RawExample(example_id, row[seq_col].strip().encode(), label)


def read_fastx_examples(path: str | Path, *, require_label: bool) -> Iterator[RawExample]:
    """Records of a FASTA/FASTQ file with optional `label=NAME` / `>id|NAME` labels."""
    import pysam

    path = Path(path)
    first = _first_byte(path)
    if first is None:
        raise input_error(path, "empty FASTA (no sequences)")
    if first not in b">@":
        raise input_error(path, "not a FASTA/FASTQ file (the first line does not start with '>')")
    with pysam.FastxFile(str(path)) as records:
        for record in records:
            example_id, label = _header_label(record.name, record.comment or "")
            if require_label and label is None:
                raise input_error(
                    path,
                    f"record {record.name} has no label (write '>id label=NAME' or '>id|NAME')",
                )
            yield RawExample(example_id, (record.sequence or "").encode(), label)


def read_bed_examples(bed: Path, genome: str | Path) -> list[RawExample]:
    """BED intervals cut from `genome`, labelled by the name column."""
    from pipeline.io import read_bed_sequences

    labels = _bed_labels(bed)
    records = list(read_bed_sequences(bed, genome))
    if len(records) != len(labels):
        raise input_error(bed, f"{len(labels)} intervals but {len(records)} sequences were cut")
    return [RawExample(r.name, r.sequence, label) for r, label in zip(records, labels, strict=True)]


def hold_out_dev(train: LabelledSplit, seed: int) -> tuple[LabelledSplit, LabelledSplit]:
    """Split off a seeded, stratified ~10% of `train` as dev (at least one per class of >= 2)."""
    rng = np.random.default_rng(seed)
    dev_index = []
    for label in np.unique(train.labels):
        members = rng.permutation(np.flatnonzero(train.labels == label))
        take = max(1, round(DEV_FRACTION * members.size)) if members.size >= 2 else 0
        dev_index.extend(members[:take].tolist())
    dev_mask = np.zeros(len(train), dtype=bool)
    dev_mask[dev_index] = True
    source = f"{train.source} (held-out {DEV_FRACTION:.0%}, seed {seed})"
    return train.subset(np.flatnonzero(~dev_mask), train.source), train.subset(
        np.flatnonzero(dev_mask), source
    )


def normalise_label(path: Path, label: str) -> str:
    """`1.0` -> `1`; text labels unchanged; non-integral numbers and missing values (NaN, NA,
    null) are an error."""
    if label.lower() in MISSING_LABELS:
        raise input_error(path, f"missing label {label!r}; remove the examples that have none")
    if _NUMBER.match(label):
        value = float(label)
        if not value.is_integer():
            raise input_error(
                path, f"label '{label}' is a non-integer number; classification needs class labels"
            )
        return str(int(value))
    return label


def _label_names(path: Path, examples: list[RawExample]) -> list[str]:
    names = {normalise_label(path, e.label) for e in examples if e.label is not None}
    if len(names) < 2:
        only = next(iter(names), "")
        raise input_error(
            path, f"the training set has a single class '{only}'; classification needs at least two"
        )
    if all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _tokenize(
    path: Path, examples: list[RawExample], label_names: list[str], tokenizer
) -> LabelledSplit:
    from titans_dna.tokenizer import InvalidSequenceError

    label_id = {name: i for i, name in enumerate(label_names)}
    sequences, labels = [], np.empty(len(examples), dtype=np.int64)
    for i, example in enumerate(examples):
        name = normalise_label(path, example.label)
        if name not in label_id:
            raise input_error(
                path, f"label '{name}' of {example.id} never appears in the training set"
            )
        if not example.sequence:
            raise input_error(path, f"{example.id} has an empty sequence")
        try:
            ids, _ = tokenizer.encode(example.sequence, source=str(path), record=example.id)
        except InvalidSequenceError as error:
            raise PipelineError(str(error)) from None
        sequences.append(ids)
        labels[i] = label_id[name]
    return LabelledSplit(str(path), [e.id for e in examples], sequences, labels)


def _header_label(name: str, comment: str) -> tuple[str, str | None]:
    match = _LABEL_WORD.search(comment)
    if match:
        return name, match.group(1)
    if "|" in name:
        example_id, _, label = name.rpartition("|")
        return example_id, label or None
    return name, None


def _bed_labels(bed: Path) -> list[str]:
    labels = []
    with _open_text(bed) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            # Split as pipeline.io.bed does: on tabs when present, else on any whitespace.
            fields = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(fields) < 4 or not fields[3].strip():
                raise input_error(bed, f"line {line_number} has no label in the name column (4th)")
            labels.append(fields[3].strip())
    return labels


def _open_text(path: Path):
    if _is_gzip(path):
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _first_byte(path: Path) -> bytes | None:
    """The first non-whitespace byte of a (possibly gzipped) file, None when there is none."""
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as handle:
        while block := handle.read(65536):
            stripped = block.lstrip()
            if stripped:
                return stripped[:1]
    return None
