"""The `titans-dna` command line: one subcommand per module in `pipeline.commands` (module
`long_context` is command `long-context`).

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`,
and keeps heavy imports inside `run` so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pipeline.commands
from pipeline import __version__
from pipeline.allocator import keep_freed_memory
from pipeline.cli_options import HIDDEN_ALIASES
from pipeline.errors import PipelineError

# The order subcommands are listed in `--help`; modules not named here follow alphabetically.
PIPELINE_ORDER = (
    "fetch",
    "tokenize",
    "pretrain",
    "finetune",
    "predict",
    "embed",
    "evaluate",
    "likelihood",
    "long_context",
)

log = logging.getLogger("pipeline")
QUIET_LOGGERS = ("h5py", "matplotlib", "PIL", "urllib3", "fsspec", "torch", "numba")
EXIT_CODES = (
    "exit codes: 0 done; 1 internal error (a bug: please report it); 2 usage error (bad "
    "options); 3 bad input (a file, its content or the configuration); 4 cannot write an "
    "output (full disk, read-only folder, no permission); 130 interrupted (Ctrl-C); 143 "
    "terminated (SIGTERM)"
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that states each default once: none for required options or options without a
    default, on/off for switches, and nothing added where the help text already says it."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if o not in HIDDEN_ALIASES]
        if len(shown) == len(action.option_strings):
            return super()._format_action_invocation(action)
        return super()._format_action_invocation(_replace(action, option_strings=shown))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace(" (default: %(default)s)", "")
        default = action.default
        if action.required or default in (None, argparse.SUPPRESS, []) or "default" in text:
            return text
        if isinstance(action, argparse.BooleanOptionalAction):
            return f"{text} (default: {'on' if default else 'off'})"
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            return text
        return f"{text} (default: %(default)s)"


def _replace(action: argparse.Action, **changes) -> argparse.Action:
    clone = argparse.Action.__new__(type(action))
    clone.__dict__.update({**vars(action), **changes})
    return clone


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="titans-dna",
        description="Long-context DNA language models on the Titans architecture.",
    )
    parser.add_argument("--version", action="version", version=f"titans-dna {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level log lines")
    # -v after the command too; unset there, so it never resets the one given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="debug-level log lines (of titans-dna; other libraries stay at warnings)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_names():
        module = importlib.import_module(f"pipeline.commands.{name}")
        command = sub.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=module.__doc__,
            formatter_class=HelpFormatter,
            parents=[common],
            epilog=EXIT_CODES,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def command_names() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(pipeline.commands.__path__)]
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


# Failures of this process, kept alive until exit: a failed HDF5 write leaves objects that crash
# the library when freed (see `entry`).
_FAILURES: list[BaseException] = []


class Terminated(BaseException):
    """SIGTERM (SLURM's cancel and time limit), raised in the main thread so that every cleanup
    runs, as for Ctrl-C; a BaseException, so no `except Exception` swallows it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises Terminated (commands may install their own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for library in QUIET_LOGGERS:  # their debug lines drown the run's
        logging.getLogger(library).setLevel(logging.WARNING)
    keep_freed_memory()
    if not args.verbose:  # the command's own lines say what matters; -v shows the library's
        warnings.filterwarnings("ignore", module=r"sklearn(\..*)?$")
    name = f"titans-dna {args.command}"
    with sigterm_raises():
        try:
            return int(args.run(args) or 0)
        except PipelineError as error:
            _FAILURES.append(error)
            print(f"{name}: error: {error}", file=sys.stderr)
            return error.exit_code
        except OSError as error:  # a write outside the atomic outputs, or a read that failed
            from pipeline.atomic import write_failure

            _FAILURES.append(error)
            where = Path(error.filename) if error.filename else Path("(output)")
            failure = write_failure(where, error)
            print(f"{name}: error: {failure}", file=sys.stderr)
            return failure.exit_code
        except KeyboardInterrupt:
            print(f"{name}: interrupted; no partial output is left", file=sys.stderr)
            return 130
        except Terminated:
            print(f"{name}: terminated (SIGTERM); no partial output is left", file=sys.stderr)
            return 143


def entry() -> None:
    """The console script: `main`, then exit. After a failure with HDF5 files open (a full
    disk leaves the library unable to close them), exit without interpreter teardown: freeing
    those objects would crash in HDF5 after the one-line error (they stay referenced from the
    kept failure until then); every temporary is removed by then."""
    sys.unraisablehook = _quiet_unraisable
    sys.excepthook = _quiet_h5py_cleanup
    code = main()
    if code and "h5py" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    # h5py reports failed writes of objects it frees as "Exception ignored": the one-line error
    # of the command says what happened; the details go to the debug log
    log.debug("ignored during cleanup: %r", unraisable.exc_value)


def _quiet_h5py_cleanup(kind: type, value: BaseException, tb: object) -> None:
    """sys.excepthook: h5py also prints the failed writes of the objects it frees; keep those
    quiet and every other uncaught exception as it is."""
    frames, step = [], tb
    while step is not None:
        frames.append(step.tb_frame.f_code.co_filename)
        step = step.tb_next
    if frames and all("h5py" in name for name in frames):
        log.debug("ignored during cleanup: %r", value)
        return
    sys.__excepthook__(kind, value, tb)


if __name__ == "__main__":
    entry()
