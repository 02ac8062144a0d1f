"""Which part of the streamed state drifts: memory weights, momentum, or what the memory returns.

Held-out human chr20 (the last 5%, N-free) streams through each model in pieces of `--piece`
bases with the state carried, `--length` bases per region. After each piece, per memory layer:
the distance of the memory weights from their learned initial state (relative Frobenius norm,
all layers of the MLP memory together), the momentum's norm relative to the initial weights'
norm, and the RMS of what the memory returns (its output before the block mixes it in); and the
bits/base of the piece, streamed and in a fresh window. A state that drifts past the training
length shows as weights or momentum that keep growing while the streamed bits/base climb above
the windowed ones.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from common import SHARED_DATA, append_section, markdown_table

REPORT_AT = (512, 2048, 8192, 16384, 32768, 65536)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", nargs=2, action="append", metavar=("LABEL", "CHECKPOINT"), required=True
    )
    parser.add_argument("--length", type=int, default=65536)
    parser.add_argument("--piece", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-append", action="store_true", help="do not write docs/benchmarks.md")
    return parser.parse_args()


def memory_layers(lm) -> list:
    """The NeuralMemory module of every block that has one, in block order."""
    return [block.memory for block in lm.blocks if hasattr(block, "memory")]


def memory_states(state) -> list:
    """The MemoryState (weights, momentum) of every block of a TitansState, in block order."""
    found = []
    for layer in state.layers:
        memory = getattr(layer, "memory", None)
        memory = getattr(memory, "memory", memory)  # one level deeper for MAC
        if memory is not None:
            found.append(memory)
    return found


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def trace(lm, stretch: np.ndarray, piece: int) -> list[dict]:
    """Per piece: its end, streamed and windowed bits/base, and per-layer state measures."""
    import torch
    import torch.nn.functional as F

    layers = memory_layers(lm)
    initial = [[w.detach()[None] for w in layer.init_weights] for layer in layers]
    returned: dict[int, float] = {}

    def hook(k: int):
        return lambda _module, _inputs, out: returned.__setitem__(
            k, float(out[0].float().pow(2).mean().sqrt())
        )

    hooks = [layer.register_forward_hook(hook(k)) for k, layer in enumerate(layers)]
    tokens = torch.from_numpy(stretch.astype(np.int64))[None]
    rows, state = [], None
    with torch.no_grad():
        for lo in range(0, tokens.shape[1] - piece, piece):
            inputs, targets = tokens[:, lo : lo + piece], tokens[:, lo + 1 : lo + piece + 1]
            fresh = lm(inputs)[0]
            logits, _, state = lm(inputs, state)
            row = {"end": lo + piece}
            for name, out in (("streamed", logits), ("window", fresh)):
                logp = F.log_softmax(out.float(), -1).gather(-1, targets[..., None])[..., 0]
                row[name] = float(-logp.mean()) / math.log(2)
            for k, memory in enumerate(memory_states(state)):
                w0 = initial[k]
                moved = [w - w_init for w, w_init in zip(memory.weights, w0, strict=True)]
                row[f"w{k}"] = _norm(moved) / _norm(w0)
                row[f"s{k}"] = _norm(memory.momentum) / _norm(w0)
                row[f"out{k}"] = returned[k]
            rows.append(row)
    for handle in hooks:
        handle.remove()
    return rows


def summarize(rows: list[dict], layers: int) -> list[dict]:
    """Mean bits/base per position range; state measures at the end of each range."""
    table, start = [], 0
    for edge in REPORT_AT:
        part = [r for r in rows if start < r["end"] <= edge]
        if part:
            last = part[-1]
            row = {
                "positions": f"{start:,}-{edge:,}",
                "streamed": float(np.mean([r["streamed"] for r in part])),
                "window": float(np.mean([r["window"] for r in part])),
            }
            for k in range(layers):
                row[f"L{k + 1} weights moved"] = last[f"w{k}"]
                row[f"L{k + 1} momentum"] = last[f"s{k}"]
                row[f"L{k + 1} output RMS"] = last[f"out{k}"]
            table.append(row)
        start = edge
    return table


def main() -> int:
    import torch

    from pipeline.longcontext.measure import held_out_tokens
    from titans_dna.models.lm import TitansLM
    from titans_dna.tokenizer import N_ID

    args = parse_args()
    torch.set_num_threads(args.threads)
    _, ids = held_out_tokens(SHARED_DATA / "genomes" / "human_grch37_chr20.fa.gz", 0.05)
    start = next(
        s for s in range(0, len(ids), 10_000) if not (ids[s : s + args.length + 1] == N_ID).any()
    )
    stretch = ids[start : start + args.length + 1]
    sections = []
    for label, checkpoint in args.model:
        lm = TitansLM.from_pretrained(checkpoint).eval()
        rows = trace(lm, stretch, args.piece)
        table = summarize(rows, len(memory_layers(lm)))
        sections.append(f"### {label}\n\n" + markdown_table(table, list(table[0])))
        print(sections[-1], flush=True)
    body = "\n\n".join(sections) + (
        f"\n\nOne N-free held-out region of human chr20 ({args.length:,} bases) streamed in "
        f"pieces of {args.piece}; bits/base per position range, streamed (state carried) and "
        "window (the same piece from a fresh state); state measures at the end of each range: "
        "weights moved = ||W - W_init|| / ||W_init||, momentum = ||S|| / ||W_init||, output "
        "RMS = root mean square of the memory layer's output over the last piece."
    )
    if not args.no_append:
        append_section("Streamed state by position", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
