"""The options every command spells the same way, and the value types they share.

`-o/--output` names what a command writes, `--checkpoint` the model it reads; on/off options are
`--NAME/--no-NAME` switches. Spellings of earlier releases still parse (`--out`, `predict
--model`) but are left out of `--help`.
"""

from __future__ import annotations

import argparse

# Old spellings accepted for one release, not shown in --help.
HIDDEN_ALIASES = frozenset({"--out", "--model"})
# Pooling of token states: a classifier can learn an attention query; embedding a checkpoint
# uses the parameter-free ones (an attention query exists only once it is trained).
POOLINGS = ("mean", "last", "max", "attention")
FREE_POOLINGS = ("mean", "last", "max")


def add_output(parser: argparse.ArgumentParser, help: str, **kwargs) -> None:
    """`-o/--output` (required)."""
    parser.add_argument("-o", "--output", "--out", dest="output", required=True, help=help,
                        **kwargs)  # fmt: skip


def add_checkpoint(parser: argparse.ArgumentParser, help: str, *aliases: str) -> None:
    """`--checkpoint` (required)."""
    parser.add_argument("--checkpoint", *aliases, dest="checkpoint", required=True, help=help)


def add_device(parser: argparse.ArgumentParser) -> None:
    """`--device` (auto: CUDA when present)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def add_invalid(parser: argparse.ArgumentParser) -> None:
    """`--invalid`: what bytes that are not nucleotide codes do."""
    parser.add_argument(
        "--invalid",
        choices=("error", "n"),
        default="error",
        help="bytes that are not nucleotide codes: fail, or read them as N",
    )


def add_switch(parser: argparse.ArgumentParser, name: str, default: bool | None, help: str):
    """`--NAME/--no-NAME`; the help states the default (None: it says what decides)."""
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default,
                        help=help)  # fmt: skip


def add_rc_average(parser: argparse.ArgumentParser, note: str = "") -> None:
    """`--rc-average/--no-rc-average`, unset meaning: as the checkpoint says."""
    add_switch(
        parser, "rc-average", None,
        f"{note}average both strands, or use the forward strand only (default: as the "
        "checkpoint says: a fine-tuned model's own setting, the forward strand for a "
        "pretrained one)",
    )  # fmt: skip


def parse_setting(item: str) -> tuple[str, object]:
    """A `--set KEY=VALUE` item: the key and the value read as a YAML scalar (32, 1e-3, mag,
    null); PipelineError naming the item when it is not of that form."""
    import yaml

    from pipeline.errors import PipelineError

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise PipelineError(f"--set {item}: expected KEY=VALUE (e.g. optim.lr=1e-3)")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise PipelineError(
            f"--set {item}: unreadable value ({' '.join(str(err).split())})"
        ) from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def open_unit(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value
