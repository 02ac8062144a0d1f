"""Fetch one input file: a local path or a URL, verified by sha256, written atomically.

A URL is first looked for, by file name, in the mirror folders (--mirror, else the
TITANS_DNA_MIRROR environment variable, a list separated like PATH); a mirror copy is used
only when its checksum matches. Otherwise it is downloaded, retrying transient failures with
exponential backoff. A local path is verified when --sha256 is given, then copied. Nothing
appears under the output name unless it is complete and verified.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli_options import add_output

HELP = "fetch an input file (local path or URL) and verify its sha256"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="local path, or http(s)/ftp/file URL")
    parser.add_argument(
        "--sha256", metavar="HEX", help="expected sha256 (required for a URL, optional for a path)"
    )
    add_output(parser, "output file", type=Path)
    parser.add_argument(
        "--mirror",
        action="append",
        metavar="DIR",
        help="folder searched first for a URL's file name (repeatable; default $TITANS_DNA_MIRROR)",
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="retries after the first failed download attempt"
    )
    parser.add_argument(
        "--backoff", type=float, default=2.0, help="seconds before the first retry (then doubled)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import PipelineError
    from pipeline.fetch import DownloadPolicy, fetch, mirror_folders

    if args.retries < 0 or args.backoff < 0 or args.timeout <= 0:
        raise PipelineError("--retries and --backoff must be >= 0 and --timeout > 0")
    policy = DownloadPolicy(retries=args.retries, backoff=args.backoff, timeout=args.timeout)
    fetch(
        args.source,
        args.output,
        sha256=args.sha256,
        mirrors=mirror_folders(args.mirror),
        policy=policy,
    )
    return 0
