"""One convention across the commands: option names, on/off switches, help and exit codes."""

from __future__ import annotations

import re

import pytest

from pipeline.cli import build_parser, command_names, main

COMMANDS = [name.replace("_", "-") for name in command_names()]
WRITES = {"fetch", "tokenize", "pretrain", "finetune", "embed", "predict", "evaluate", "report"}
LOADS = {"finetune", "embed", "predict", "evaluate", "likelihood", "score-variants"}


def help_text(command: str, capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once_and_correctly(command: str, capsys) -> None:
    text = help_text(command, capsys)
    assert "(default: None)" not in text
    assert "(default: True)" not in text and "(default: False)" not in text
    # one entry per option: from its flags to the next flags
    entries = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    for entry in entries:
        assert entry.count("default") <= 1, entry
    assert "exit codes: 0 done" in text and "3 bad input" in text and "4 cannot write" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_shared_option_names(command: str, capsys) -> None:
    text = help_text(command, capsys)
    if command in WRITES:
        assert "-o OUTPUT, --output OUTPUT" in text
    if command in LOADS:
        assert "--checkpoint CHECKPOINT" in text
    assert "--out " not in text and "--model " not in text  # hidden old spellings
    for switch in re.findall(r"--no-([\w-]+)", text):
        assert f"--{switch}, --no-{switch}" in text, switch  # on/off pairs only


def test_verbose_is_accepted_after_the_command() -> None:
    args = build_parser().parse_args(["tokenize", "x.fa", "-o", "x.h5", "-v"])
    assert args.verbose
    args = build_parser().parse_args(["-v", "tokenize", "x.fa", "-o", "x.h5"])
    assert args.verbose


def test_old_spellings_still_parse() -> None:
    args = build_parser().parse_args(["pretrain", "--out", "run"])
    assert str(args.output) == "run"
