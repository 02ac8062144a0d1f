"""Schedules as pure functions of the optimizer step: learning rate, sequence-length warmup and
streams.

Sequence-length warmup (HyenaDNA): training starts at `seqlen_warmup_start` tokens per window and
the context doubles every `seqlen_warmup_steps` steps until it reaches `train.context`; the
number of tokens per step stays fixed, so the batch grows by the same factor the window shrinks.

Streams (truncated backpropagation through time): with `train.stream_windows` K > 1, each batch
row reads K consecutive windows of one stretch of sequence, and the model state carries from
each window to the next; streams start afresh at every stage. With `train.stream_interleave` m,
m groups of streams take turns (step t advances group t mod m), so consecutive steps train on
different stretches of the genome and a stream lasts m * K steps.
"""

from __future__ import annotations

from pipeline.optim import warmup_then_decay
from pipeline.pretrain.config import OptimSection, TrainSection


def lr_factor(step: int, optim: OptimSection, max_steps: int, time_done: float = 0.0) -> float:
    """Multiplier of optim.lr for step `step` (0-based): linear warmup over warmup_steps, then
    cosine decay reaching min_lr_ratio at the last step, or when the time budget ends if that
    comes first: `time_done` is the fraction of train.max_minutes spent, which moves the decay
    on as far as the steps do (a budget that stops the run at step 1,300 of 100,000 would
    otherwise leave the learning rate at its peak to the end)."""
    warmup, done = optim.warmup_steps / max_steps, (step + 1) / max_steps
    if done >= warmup:  # the warmup counts steps only
        done = max(done, warmup + min(time_done, 1.0) * (1.0 - warmup))
    return warmup_then_decay(done, warmup, floor=optim.min_lr_ratio)


def stage(step: int, train: TrainSection) -> tuple[int, int]:
    """(context, global batch size in windows) used at optimizer step `step`."""
    start = train.seqlen_warmup_start
    if start is None or train.seqlen_warmup_steps == 0:
        return train.context, train.batch_size
    context = min(start * 2 ** (step // train.seqlen_warmup_steps), train.context)
    return context, train.batch_size * (train.context // context)


def tokens_per_step(train: TrainSection) -> int:
    """Tokens scored per optimizer step (the same at every stage)."""
    return train.context * train.batch_size


def stage_start(step: int, train: TrainSection) -> int:
    """First optimizer step of the sequence-length stage that `step` belongs to."""
    start = train.seqlen_warmup_start
    if start is None or train.seqlen_warmup_steps == 0:
        return 0
    warmup = train.seqlen_warmup_steps * ((train.context // start).bit_length() - 1)
    return min(step // train.seqlen_warmup_steps * train.seqlen_warmup_steps, warmup)


def stream_position(step: int, train: TrainSection) -> tuple[int, int, int]:
    """(first step of the streams `step` reads, index of their window in them, their group)."""
    local = step - stage_start(step, train)
    group = local % train.stream_interleave
    index = (local // train.stream_interleave) % train.stream_windows
    return step - index * train.stream_interleave, index, group
