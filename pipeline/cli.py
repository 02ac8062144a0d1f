"""The `titans-dna` command line: one subcommand per module in `pipeline.commands`.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and keeps heavy imports inside `run` so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import pipeline.commands
from pipeline import __version__
from pipeline.allocator import keep_freed_memory
from pipeline.errors import PipelineError

# The order subcommands are listed in `--help`; modules not named here follow alphabetically.
PIPELINE_ORDER = ("fetch", "tokenize", "pretrain", "finetune", "predict", "embed", "evaluate")

log = logging.getLogger("titans_dna")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="titans-dna",
        description="Long-context DNA language models on the Titans architecture.",
    )
    parser.add_argument("--version", action="version", version=f"titans-dna {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_names():
        module = importlib.import_module(f"pipeline.commands.{name}")
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def command_names() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(pipeline.commands.__path__)]
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    keep_freed_memory()
    try:
        return int(args.run(args) or 0)
    except PipelineError as error:
        print(f"titans-dna {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"titans-dna {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
