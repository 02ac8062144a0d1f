"""The pretraining loop: weighted next-nucleotide cross-entropy, AdamW, checkpoints, evaluation.

One optimizer step sees a global batch of windows (`train.batch_size` at the final context, more
at shorter warmup contexts), split over ranks and `grad_accum` micro-batches. The loss is the sum
of weighted token losses divided by the step's total weight over all ranks, so the gradient is
the same however the batch is split (DDP averages gradients over ranks, hence the factor
world_size). bfloat16 autocast runs on CUDA only; the CPU computes in float32.

Held-out evaluation scores every A/C/G/T target with weight 1 (soft-masked or not):
val_loss = mean NLL in nats, bits per base = val_loss / ln 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.atomic import atomic_dir, atomic_file, check_output_parent
from pipeline.device import autocast
from pipeline.errors import PipelineError
from pipeline.manifest import write_manifest
from pipeline.optim import WeightAverage, decay_groups
from pipeline.pretrain import checkpoint as ckpt
from pipeline.pretrain import distributed as dist
from pipeline.pretrain.config import PretrainConfig, save_config
from pipeline.pretrain.data import Batch, Corpus, Piece
from pipeline.pretrain.markov import MarkovCounts, MarkovResult, evaluate_markov
from pipeline.pretrain.metrics import CURVES, MetricsLog, plot_curves
from pipeline.pretrain.schedule import lr_factor, stage, stream_position
from pipeline.progress import Progress
from titans_dna.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_weights
from titans_dna.models.lm import TitansLM, TitansState
from titans_dna.tokenizer import A_ID, T_ID, DNATokenizer

log = logging.getLogger("pipeline")


@dataclass
class Counters:
    """Progress that a checkpoint carries over: steps, tokens, time, the open log interval."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0  # forward/backward/optimizer time, all invocations
    wall_seconds: float = 0.0  # whole-run time of earlier invocations
    interval_nll: float = 0.0  # weighted loss summed since the last metrics row
    interval_weight: float = 0.0
    interval_seconds: float = 0.0
    interval_tokens: int = 0


class Trainer:
    """Builds everything from the configuration and runs (or resumes) pretraining into `out`."""

    def __init__(self, config: PretrainConfig, out: Path, ctx: dist.DistContext, resume: str):
        self.config, self.out, self.ctx = config, out, ctx
        self.started = time.monotonic()
        self.stop_signal = False
        self.time_done = 0.0  # share of train.max_minutes spent, the same on every rank
        self.model_config = config.model_config()
        self.corpus = Corpus(config.data, seed=config.seed)
        self.corpus.check_context(config.train.context, config.train.stream_windows)
        self._check_batch_split()
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = TitansLM(self.model_config).to(ctx.device)
        self.model.gradient_checkpointing = config.train.activation_checkpointing
        self.optimizer = _adamw(self.model, config)
        decay = config.optim.ema_decay
        self.average = WeightAverage(self.model, decay) if decay else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, config.optim, config.train.max_steps, self.time_done),
        )
        torch.manual_seed(config.seed + 1 + ctx.rank)  # dropout differs across ranks
        self.counters = Counters()
        self.grad_norm: float | None = None
        # when rows read streams: per interleaved group, the state of each micro-batch's rows
        self.carried: dict[int, list[TitansState | None]] = {}
        self.group = 0
        resumed = self._resume(resume)
        self.ddp: nn.Module = (
            DistributedDataParallel(self.model, device_ids=_device_ids(ctx))
            if ctx.distributed
            else self.model
        )
        self.metrics = MetricsLog(out, resume_step=resumed) if ctx.is_main else None
        self.val_windows = self.corpus.val_windows(config.train.context, config.eval.max_tokens)

    def _check_batch_split(self) -> None:
        t, world = self.config.train, self.ctx.world_size
        if t.batch_size % (world * t.grad_accum):
            raise PipelineError(
                f"train.batch_size ({t.batch_size}) must be a multiple of world size ({world}) "
                f"x train.grad_accum ({t.grad_accum})"
            )

    # ----- resume ------------------------------------------------------------------------------

    def _resume(self, resume: str) -> int | None:
        folder = ckpt.resolve_resume(self.out, resume) if self.ctx.is_main else None
        folder = dist.broadcast_object(self.ctx, None if folder is None else str(folder))
        if folder is None:
            return None
        folder = Path(folder)
        ckpt.check_model_config(folder, self.model_config)
        state = ckpt.load_training_state(folder)
        load_weights(self.model, folder, map_location=str(self.ctx.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._restore_average(state.get("average"), folder)
        self.counters = Counters(**state["counters"])
        self._restore_sampler(state["sampler"], folder)
        rngs = state["rng"]
        if len(rngs) == self.ctx.world_size:
            ckpt.set_rng_state(rngs[self.ctx.rank])
        else:
            log.warning(
                "checkpoint has RNG states of %d ranks, now %d: dropout streams restart",
                len(rngs),
                self.ctx.world_size,
            )
        log.info("resumed from %s at step %d", folder, self.counters.step)
        return self.counters.step

    def _restore_sampler(self, sampler: dict[str, Any], folder: Path) -> None:
        if sampler["seed"] != self.config.seed or sampler["layout"] != self._layout():
            log.warning(
                "%s: the data (stores, split or seed) changed since this checkpoint; "
                "the window stream differs from the interrupted run",
                folder,
            )

    def _layout(self) -> str:
        tracks = [
            (t.store, [(p.contig, p.start, p.end) for p in t.pieces]) for t in self.corpus.tracks
        ]
        # resolved: the same stores named by another (relative) path are the same data
        return json.dumps([[str(p.resolve()) for p in self.corpus.paths], tracks])

    def _restore_average(self, state: dict | None, folder: Path) -> None:
        if self.average is None:
            return
        if state is None:  # a checkpoint of a run without averaging: start from its weights
            log.warning("%s holds no weight average: it starts from the resumed weights", folder)
            self.average = WeightAverage(self.model, self.config.optim.ema_decay)
            return
        try:
            self.average.load_state_dict(state)
        except (KeyError, ValueError) as error:
            raise PipelineError(
                f"{folder}: weight average does not fit the model ({error})"
            ) from None

    # ----- training ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        """Train to train.max_steps (or the time budget); the summary, or None if stopped by
        SIGTERM (after a checkpoint)."""
        if self.ctx.is_main:
            with atomic_file(self.out / "config.yaml") as tmp:
                save_config(self.config, tmp)
        self._replay_streams()
        with self._sigterm_stops():
            reason = self._train()
        if self.counters.step % self.config.checkpoint.every or reason == "sigterm":
            self._checkpoint()
        if reason == "sigterm":
            return None
        return self._finish(stopped_early=reason == "time")

    @contextlib.contextmanager
    def _sigterm_stops(self) -> Iterator[None]:
        """While training, SIGTERM (SLURM's warning before a time limit, torchrun's shutdown)
        asks for a checkpoint at the next step instead of ending the process."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stop_signal = True

    def _train(self) -> str:
        """Run steps until done; returns why it stopped: "done", "time" or "sigterm"."""
        t = self.config.train
        todo = max(t.max_steps - self.counters.step, 0)
        progress = Progress(todo, "pretrain", "step") if self.ctx.is_main else None
        reason = "done"
        while self.counters.step < t.max_steps:
            stop = self._stop_request()
            if stop:
                reason = stop
                break
            loss = self._step()
            if progress is not None:
                progress.update(1, loss=f"{loss:.4f}")
            self._after_step()
        if progress is not None:
            progress.close()
        return reason

    def _stop_request(self) -> str | None:
        minutes = self.config.train.max_minutes
        over = minutes is not None and time.monotonic() - self.started > 60 * minutes
        # rank 0's clock sets the schedule: ranks stepping at different rates would drift apart
        wall = self._wall() if self.ctx.is_main else 0.0
        flags = dist.all_reduce_sum(
            self.ctx, torch.tensor([float(self.stop_signal), float(over), wall])
        )
        if minutes is not None:
            self.time_done = float(flags[2]) / (60 * minutes)
        if flags[0] > 0:
            log.warning("SIGTERM: writing a checkpoint and stopping")
            return "sigterm"
        if flags[1] > 0:
            log.info("time budget of %s minutes reached at step %d", minutes, self.counters.step)
            return "time"
        return None

    def _step(self) -> float:
        """One optimizer step; returns its global weighted loss (nats per weighted target)."""
        start = time.monotonic()
        step = self.counters.step
        context, batch_size = stage(step, self.config.train)
        micro = self._micro_batches(step, context, batch_size)
        local_weight = sum(float(b.weights.sum()) for b in micro)
        total_weight = float(dist.all_reduce_sum(self.ctx, torch.tensor([local_weight]))[0])
        scale = self.ctx.world_size / max(total_weight, 1.0)
        self.ddp.train()
        local_nll = 0.0
        for k, batch in enumerate(micro):
            sync = k == len(micro) - 1 or not self.ctx.distributed
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                nll = self._weighted_nll(batch, k)
                (nll * scale).backward()
            local_nll += float(nll.detach())
        grad_norm = self._clip()
        if not math.isfinite(grad_norm):  # before the update: the weights stay usable
            raise PipelineError(
                f"non-finite gradients at step {step + 1} (context {context}); lower "
                "optim.lr, model.max_surprise_norm or train.context"
            )
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update()
        self.optimizer.zero_grad(set_to_none=True)
        nll_sum = float(dist.all_reduce_sum(self.ctx, torch.tensor([local_nll]))[0])
        loss = nll_sum / max(total_weight, 1.0)
        if not math.isfinite(loss):
            raise PipelineError(
                f"non-finite training loss at step {step + 1}; lower optim.lr or "
                "model.max_surprise_norm, or raise optim.warmup_steps"
            )
        c = self.counters
        c.step += 1
        c.tokens += context * batch_size
        elapsed = time.monotonic() - start
        c.train_seconds += elapsed
        c.interval_nll += nll_sum
        c.interval_weight += total_weight
        c.interval_seconds += elapsed
        c.interval_tokens += context * batch_size
        self.grad_norm = grad_norm
        return loss

    def _micro_batches(self, step: int, context: int, batch_size: int) -> list[Batch]:
        """This rank's share of the global batch, as grad_accum micro-batches. When rows read
        streams, a stream's first step also drops the state carried from the previous one."""
        per_rank = batch_size // self.ctx.world_size
        size = per_rank // self.config.train.grad_accum
        first = self.ctx.rank * per_rank
        stream = None
        windows = self.config.train.stream_windows
        if windows > 1:
            first_step, index, self.group = stream_position(step, self.config.train)
            stream = (first_step, index, windows)
            if index == 0 or self.group not in self.carried:
                self.carried[self.group] = [None] * self.config.train.grad_accum
        return [
            self.corpus.train_batch(step, batch_size, context, range(lo, lo + size), stream)
            for lo in range(first, first + per_rank, size)
        ]

    def _weighted_nll(self, batch: Batch, micro: int) -> torch.Tensor:
        """Sum over targets of weight x NLL (scalar, float32); carries the state of streams."""
        device = self.ctx.device
        states = self.carried.get(self.group) if self.config.train.stream_windows > 1 else None
        with self._autocast():
            logits, _, state = self.ddp(batch.inputs.to(device), states and states[micro])
        if states is not None:
            states[micro] = state.detach()
        nll = F.cross_entropy(
            logits.float().flatten(0, 1), batch.targets.to(device).flatten(), reduction="none"
        )
        return (nll * batch.weights.to(device).flatten()).sum()

    @torch.no_grad()
    def _replay_streams(self) -> None:
        """After a resume inside streams, rebuild their carried states from their earlier
        windows (forward passes with the resumed weights; checkpoints hold no model state)."""
        train = self.config.train
        step = self.counters.step
        if train.stream_windows == 1 or step >= train.max_steps:
            return
        replay = set()
        for ahead in range(train.stream_interleave):  # the next step of every group
            first, index, _ = stream_position(step + ahead, train)
            if first + index * train.stream_interleave == step + ahead:
                replay.update(first + i * train.stream_interleave for i in range(index))
        replay = sorted(t for t in replay if t < step)
        if not replay:
            return
        log.info("replaying %d window(s) of the open streams", len(replay))
        self.model.eval()
        for replayed in replay:
            context, batch_size = stage(replayed, train)
            for k, batch in enumerate(self._micro_batches(replayed, context, batch_size)):
                states = self.carried[self.group]
                with self._autocast():
                    states[k] = self.model(batch.inputs.to(self.ctx.device), states[k])[2]
        self.model.train()

    def _autocast(self) -> torch.autocast:
        return autocast(self.ctx.device, enabled=self.config.train.bf16)

    def _clip(self) -> float:
        clip = self.config.optim.grad_clip
        max_norm = clip if clip > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))

    def _after_step(self) -> None:
        step, t, e = self.counters.step, self.config.train, self.config.eval
        if step < t.max_steps:  # the final row comes with the final evaluation
            is_eval = step % e.every == 0
            if step % t.log_every == 0 or is_eval:
                self._log_row(self.evaluate(self.val_windows) if is_eval else None)
        if step % self.config.checkpoint.every == 0:
            self._checkpoint()

    def _log_row(self, val: tuple[float, float, int] | None) -> None:
        """Append a metrics row for the current step (replacing one already there)."""
        c = self.counters
        context, batch_size = stage(max(c.step - 1, 0), self.config.train)
        row = {
            "step": c.step,
            "tokens": c.tokens,
            "context": context,
            "batch_size": batch_size,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": c.interval_nll / c.interval_weight if c.interval_weight else None,
            "grad_norm": self.grad_norm,
            "tokens_per_s": c.interval_tokens / c.interval_seconds if c.interval_seconds else None,
            "elapsed_s": self._wall(),
            "val_loss": val[0] if val else None,
            "val_bits_per_base": val[1] if val else None,
        }
        c.interval_nll = c.interval_weight = c.interval_seconds = 0.0
        c.interval_tokens = 0
        if self.metrics is None:
            return
        rows = self.metrics.rows
        if rows and rows[-1]["step"] == c.step:
            merged = {k: v if v is not None else rows[-1].get(k) for k, v in row.items()}
            rows[-1] = merged
            self.metrics.rewrite()
        else:
            self.metrics.append(row)
        if val is not None:
            log.info("step %d: held-out %.4f bits/base", c.step, val[1])
            plot_curves(rows, self.out / CURVES, None, "")

    # ----- evaluation --------------------------------------------------------------------------

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The weights that are evaluated and saved: the moving average when there is one."""
        return contextlib.nullcontext() if self.average is None else self.average.applied()

    def evaluate(
        self, windows: list[Piece], *, averaged: bool = True
    ) -> tuple[float, float, int] | None:
        """(mean NLL in nats, bits per base, scored bases) over `windows`, all ranks together,
        with the weights that are saved (or the last trained ones: `averaged=False`); None when
        nothing is held out."""
        if not windows:
            return None
        with self._averaged() if averaged else contextlib.nullcontext():
            return self._evaluate(windows)

    @torch.no_grad()
    def _evaluate(self, windows: list[Piece]) -> tuple[float, float, int]:
        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64)
        mine = windows[self.ctx.rank :: self.ctx.world_size]
        for batch in self.corpus.val_batches(mine, self.config.eval.batch_size):
            targets = batch.targets.to(self.ctx.device)
            with self._autocast():
                logits = self.model(batch.inputs.to(self.ctx.device))[0]
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
            scored = (targets >= A_ID) & (targets <= T_ID)
            sums += torch.stack([(nll * scored).sum(), scored.sum()]).double().cpu()
        self.model.train()
        nll_sum, count = dist.all_reduce_sum(self.ctx, sums).tolist()
        loss = nll_sum / max(count, 1.0)
        return loss, loss / math.log(2), int(count)

    # ----- checkpoints and final outputs -------------------------------------------------------

    def _checkpoint(self) -> None:
        rngs = dist.gather_objects(self.ctx, ckpt.rng_state())
        if self.ctx.is_main:
            c = self.counters
            state = {
                "counters": {**c.__dict__, "wall_seconds": self._wall()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "average": None if self.average is None else self.average.state_dict(),
                "sampler": {"seed": self.config.seed, "step": c.step, "layout": self._layout()},
                "rng": rngs,
                "world_size": self.ctx.world_size,
            }
            keep = self.config.checkpoint.keep
            ckpt.save_checkpoint(self.out, c.step, self.model, self.config, state, keep)
        dist.barrier(self.ctx)

    def _wall(self) -> float:
        return self.counters.wall_seconds + time.monotonic() - self.started

    def _finish(self, *, stopped_early: bool) -> dict[str, Any]:
        e = self.config.eval
        final_windows = self.corpus.val_windows(self.config.train.context, e.final_max_tokens)
        by_genome = self._evaluate_by_store(final_windows)
        val = pool_evaluations(list(by_genome.values()))
        self._log_row(val)
        averaging = self._averaging_gain()
        summary = None
        if self.ctx.is_main:
            markov = self._markov(final_windows)
            summary = self._summary(val, markov, stopped_early)
            summary["weight_average"] = averaging
            summary["val_bits_per_base_by_genome"] = {
                name: part[1] for name, part in by_genome.items() if part is not None
            }
            self._write_final(summary, markov)
        dist.barrier(self.ctx)
        return dist.broadcast_object(self.ctx, summary)

    def _averaging_gain(self) -> dict[str, float] | None:
        """The moving average against the last weights, on the periodic evaluation's windows."""
        if self.average is None or not self.val_windows:
            return None
        averaged, last = (self.evaluate(self.val_windows, averaged=a) for a in (True, False))
        return {
            "ema_decay": self.average.decay,
            "eval_bits_per_base": averaged[1],
            "eval_bits_per_base_last_weights": last[1],
        }

    def _evaluate_by_store(self, windows: list[Piece]) -> dict[str, tuple | None]:
        """`evaluate` of each token store's held-out windows, by store file name (a genome)."""
        return {
            path.name.removesuffix(".h5"): self.evaluate([w for w in windows if w.store == s])
            for s, path in enumerate(self.corpus.paths)
        }

    def _markov(self, windows: list[Piece]) -> MarkovResult | None:
        e = self.config.eval
        if e.markov_max_order == 0 or not windows:
            return None
        log.info("fitting the order-k Markov baseline (k <= %d)", e.markov_max_order)
        segments = (self.corpus.read_piece(p) for p in self.corpus.train_pieces)
        counts = MarkovCounts(
            segments, e.markov_max_order, both_strands=self.config.data.rc_augment
        )
        ids = [self.corpus.read_piece(w) for w in windows]
        return evaluate_markov(counts, ids, e.markov_smoothing)

    def _summary(
        self, val: tuple[float, float, int] | None, markov: MarkovResult | None, early: bool
    ) -> dict[str, Any]:
        c = self.counters
        summary: dict[str, Any] = {
            "steps": c.step,
            "tokens": c.tokens,
            "val_loss": val[0] if val else None,
            "val_bits_per_base": val[1] if val else None,
            "val_scored_bases": val[2] if val else 0,
            "tokens_per_s": c.tokens / max(c.train_seconds, 1e-9),
            "train_seconds": c.train_seconds,
            "wall_s": self._wall(),
            "parameters": self.model.num_parameters(),
            "train_bases": self.corpus.train_bases,
            "val_bases": self.corpus.val_bases,
            "world_size": self.ctx.world_size,
            "device": str(self.ctx.device),
            "stopped_early": early,
            "markov": None,
        }
        if markov is not None:
            summary["markov"] = {
                "smoothing": markov.smoothing,
                "best_order": markov.best_order,
                "bits_per_base": markov.best_bits_per_base,
                "bits_per_order": markov.bits_per_order,
            }
            if val is not None:
                summary["beats_markov"] = val[1] < markov.best_bits_per_base
        return summary

    def _write_final(self, summary: dict[str, Any], markov: MarkovResult | None) -> None:
        with atomic_dir(self.out / "model") as tmp, self._averaged():
            self.model.save_pretrained(tmp)  # replaces `tmp` as a whole: write it first
            DNATokenizer().save(tmp / ckpt.TOKENIZER_FILE)
            write_manifest(tmp, (CONFIG_FILE, WEIGHTS_FILE, ckpt.TOKENIZER_FILE))
        label = f"Markov order {markov.best_order}" if markov else ""
        rows = self.metrics.rows if self.metrics is not None else []
        plot_curves(rows, self.out / CURVES, markov.best_bits_per_base if markov else None, label)
        with atomic_file(self.out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        log.info(
            "held-out %s bits/base after %d steps (%s tokens, %.0f tokens/s)",
            _fmt(summary["val_bits_per_base"]),
            summary["steps"],
            f"{summary['tokens']:,}",
            summary["tokens_per_s"],
        )
        if markov is not None:
            log.info(
                "best Markov baseline: order %d, %.4f bits/base",
                markov.best_order,
                markov.best_bits_per_base,
            )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _adamw(model: nn.Module, config: PretrainConfig) -> torch.optim.AdamW:
    o = config.optim
    groups = decay_groups(model, o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def _device_ids(ctx: dist.DistContext) -> list[int] | None:
    return [ctx.device.index] if ctx.device.type == "cuda" else None


def run_pretraining(
    config: PretrainConfig, out: str | Path, *, resume: str = "auto", device: str = "auto"
) -> dict[str, Any] | None:
    """Pretrain into `out` (created if missing); returns the summary (every rank), or None when
    SIGTERM stopped the run after a checkpoint. A run that fails before its first checkpoint
    removes the `out` it created: there is nothing to resume."""
    out = check_output_parent(out)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"{out}: is a file; -o/--output names the run's folder")
    ctx = dist.init_distributed(device)
    created = ctx.is_main and not out.exists()
    try:
        if ctx.is_main:
            out.mkdir(exist_ok=True)
        dist.barrier(ctx)
        trainer = Trainer(config, out, ctx, resume)
        try:
            return trainer.run()
        finally:
            trainer.corpus.close()
    except BaseException:
        if created and ckpt.newest_valid(out) is None:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        dist.shutdown(ctx)


Evaluation = tuple[float, float, int]  # (mean NLL in nats, bits per base, scored bases)


def pool_evaluations(parts: list[Evaluation | None]) -> Evaluation | None:
    """One (mean NLL, bits per base, scored bases) from several, weighted by scored bases."""
    known = [part for part in parts if part is not None and part[2] > 0]
    count = sum(part[2] for part in known)
    if not count:
        return None
    loss = sum(part[0] * part[2] for part in known) / count
    return loss, loss / math.log(2), count
