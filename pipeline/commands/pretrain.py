"""Pretrain a Titans DNA language model on token stores (next-nucleotide prediction).

The configuration is a YAML file (see config/pretrain/) whose keys are all checked;
`--set section.key=value` overrides any key (e.g. `--set model.d_model=128 --set optim.lr=1e-3`),
`--store` names the token stores. Writes OUT/model/ (final checkpoint with tokenizer.json),
OUT/checkpoints/step-XXXXXXXX/ (resumable), OUT/metrics.jsonl, OUT/metrics.csv, OUT/curves.png,
OUT/config.yaml (the resolved configuration) and OUT/summary.json.

A killed run continues from its newest complete checkpoint when started again with the same
-o/--output (`--resume auto`, the default). For several GPUs or nodes, launch it with torchrun, e.g.
`torchrun --nproc_per_node 4 -m pipeline.cli pretrain ...`; batch sizes are global.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.cli_options import add_output

HELP = "pretrain a Titans DNA language model on token stores"

log = logging.getLogger("pipeline")

# SIGTERM stopped the run after a checkpoint: 128 + 15, as if the signal had ended it.
EXIT_SIGTERM = 143


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML configuration (default: built-in tiny)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one configuration key, dotted (repeatable), e.g. optim.lr=1e-3",
    )
    parser.add_argument(
        "--store",
        dest="stores",
        action="append",
        nargs="+",
        metavar="PATH",
        help="token store(s) to train on (replaces data.stores)",
    )
    add_output(parser, "run folder (created; a rerun resumes in it)", type=Path)
    parser.add_argument(
        "--resume",
        default="auto",
        metavar="auto|never|PATH",
        help="auto: continue from the newest complete checkpoint in OUT if any; never: start "
        "afresh (refused when OUT holds checkpoints); PATH: continue from that checkpoint",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present), cpu, cuda or cuda:N; under torchrun each process "
        "takes cuda:LOCAL_RANK",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.pretrain.config import load_config
    from pipeline.pretrain.loop import run_pretraining

    stores = [s for group in args.stores for s in group] if args.stores else None
    config = load_config(args.config, args.sets, stores)
    summary = run_pretraining(config, args.output, resume=args.resume, device=args.device)
    if summary is None:
        log.warning("stopped by SIGTERM; run again with the same -o/--output to resume")
        return EXIT_SIGTERM
    return 0
