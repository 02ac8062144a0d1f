"""Measure how a model uses long context, on held-out real sequence.

Three measurements, each with the memory as trained and with the memory reset to its learned
initial state every --reset-every bases (the memory-off ablation; attention caches are kept):

- context curve: bits/base of the same held-out blocks after each --contexts amount of left
  context (falls when distant bases help);
- planted-repeat recall: a random --segment-base segment written twice into real background,
  --distances apart; bits/base of the second copy against the first (0: recalled, 1: not);
- natural repeats: bits/base at positions whose preceding --repeat-k bases occurred earlier in
  the window, more than --reset-every bases back.

INPUT is a sequence file; the longest record's last --held-out fraction is used (0.05: the part
pretraining holds out; 1: all of it, for a genome the model never saw). Writes one JSON file.
"""

from __future__ import annotations

import argparse

from pipeline.cli_options import add_checkpoint, add_device, add_output, positive_int

HELP = "context curve, planted-repeat recall and natural repeats of a model (JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="genome FASTA (or any sequence file)")
    add_checkpoint(parser, "TitansLM or classifier checkpoint")
    add_output(parser, "JSON file to write")
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.05,
        help="fraction at the end of the longest record measured on (1 = all of it)",
    )
    parser.add_argument(
        "--contexts",
        type=positive_int,
        nargs="+",
        default=[512, 2048, 8192, 32768],
        help="left contexts of the context curve",
    )
    parser.add_argument("--block", type=positive_int, default=1024, help="bases per block")
    parser.add_argument("--blocks", type=positive_int, default=8, help="blocks scored")
    parser.add_argument(
        "--distances",
        type=positive_int,
        nargs="+",
        default=[1024, 4096, 16384],
        help="start-to-start distances of the planted copies",
    )
    parser.add_argument("--segment", type=positive_int, default=200, help="planted bases")
    parser.add_argument("--trials", type=positive_int, default=8, help="plantings per distance")
    parser.add_argument(
        "--lead", type=positive_int, default=1024, help="background bases before the first copy"
    )
    parser.add_argument(
        "--repeat-window", type=positive_int, default=65536, help="bases per repeat window"
    )
    parser.add_argument(
        "--repeat-windows", type=positive_int, default=4, help="windows searched for repeats"
    )
    parser.add_argument("--repeat-k", type=positive_int, default=20, help="repeat k-mer length")
    parser.add_argument(
        "--reset-every",
        type=positive_int,
        default=2048,
        help="bases between memory resets of the ablation",
    )
    parser.add_argument(
        "--piece-len",
        type=positive_int,
        help="tokens per streamed piece (default: the smallest multiple of the model's "
        "streaming unit >= 2048)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled positions")
    add_device(parser)


def run(args: argparse.Namespace) -> int:
    import json

    from pipeline.atomic import atomic_file, check_output_parent
    from pipeline.batching import stream_piece_len
    from pipeline.checkpoints import load_backbone, weights_sha256
    from pipeline.device import resolve_device
    from pipeline.errors import PipelineError
    from pipeline.longcontext.measure import Settings, held_out_tokens, measure

    if not 0 < args.held_out <= 1:
        raise PipelineError(f"--held-out must be in (0, 1], got {args.held_out}")
    out = check_output_parent(args.output)
    device = resolve_device(args.device)
    lm, directory = load_backbone(args.checkpoint, device)
    unit = lm.config.stream_multiple
    piece_len = args.piece_len or stream_piece_len(unit)
    for name in ("piece_len", "reset_every"):
        value = piece_len if name == "piece_len" else args.reset_every
        if value % unit:
            raise PipelineError(f"--{name.replace('_', '-')} must be a multiple of {unit}")
    contig, ids = held_out_tokens(args.input, args.held_out)
    settings = Settings(
        contexts=args.contexts, block=args.block, blocks=args.blocks, distances=args.distances,
        segment=args.segment, trials=args.trials, lead=args.lead,
        repeat_window=args.repeat_window, repeat_windows=args.repeat_windows,
        repeat_k=args.repeat_k, reset_every=args.reset_every, piece_len=piece_len,
        seed=args.seed,
    )  # fmt: skip
    try:
        result = measure(lm, ids, settings)
    except ValueError as err:
        raise PipelineError(str(err)) from None
    result.update(
        input=str(args.input), contig=contig, held_out=args.held_out, checkpoint=str(directory),
        weights_sha256=weights_sha256(directory), variant=lm.config.variant,
    )  # fmt: skip
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0
