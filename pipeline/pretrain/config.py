"""Pretraining configuration: a YAML file validated key by key, plus `--set key=value` overrides.

Every key is checked: an unknown key or a value of the wrong type is a one-line error naming the
key and the file (or the `--set` argument). The `model` section is a preset name
(`TitansConfig.preset`) plus overrides of any `TitansConfig` field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.cli_options import parse_setting
from pipeline.errors import PipelineError
from titans_dna.models.config import TitansConfig

SMOOTHINGS = ("kneser_ney", "add_one")


@dataclass
class ModelSection:
    """`preset` names a TitansConfig preset; `overrides` replace any of its fields."""

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self) -> TitansConfig:
        """The resolved model configuration (ValueError on a bad preset or field value)."""
        return TitansConfig.preset(self.preset, **self.overrides)


@dataclass
class DataSection:
    """Where windows come from and how their targets are weighted."""

    stores: list[str] = field(default_factory=list)  # token store paths (HDF5, `tokenize` output)
    weights: list[float] | None = None  # per-store sampling weight; None = by training length
    rc_augment: bool = True  # reverse-complement each window with probability 1/2
    max_n_fraction: float = 0.5  # windows with a larger fraction of N are skipped
    softmask_weight: float = 0.1  # loss weight of soft-masked (lowercase) target bases
    val_fraction: float = 0.05  # the last fraction of each contig is held out for validation
    # whole contigs held out for validation, as "name" or "source/name"
    val_contigs: list[str] = field(default_factory=list)
    cross_contig: bool = False  # allow windows to span consecutive contigs of a store
    # Planted repeats train the memory to recall what attention no longer sees: with this
    # probability a training window gets one random segment of `repeat_segment` bases twice, the
    # second copy `repeat_distance` [min, max] bases after the first (the first copy is not
    # scored: it is not DNA). Keep min above model.window so attention cannot copy it.
    plant_repeats: float = 0.0
    repeat_segment: int = 100
    repeat_distance: list[int] = field(default_factory=lambda: [260, 411])


@dataclass
class TrainSection:
    """Length and shape of training. The defaults are the CPU settings of tiny_cpu.yaml."""

    context: int = 512  # tokens per window at the final stage
    batch_size: int = 8  # windows per optimizer step at the final context, over all ranks
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    # stop early (with a checkpoint) after this wall time; the learning rate then decays over
    # the budget, reaching optim.min_lr_ratio at max_steps or max_minutes, whichever comes first
    max_minutes: float | None = None
    seqlen_warmup_start: int | None = None  # first-stage context; doubles each stage up to context
    seqlen_warmup_steps: int = 0  # optimizer steps per sequence-length stage
    # consecutive windows each batch row reads from one stretch of sequence, the model state
    # carried (detached) from window to window: the model learns from states of streams of
    # stream_windows * context tokens (truncated backpropagation through time); 1 = independent
    stream_windows: int = 1
    # groups of streams that take turns, one group a step: consecutive steps then learn from
    # different stretches of the genome (a batch of one stretch's neighbours is correlated)
    stream_interleave: int = 1
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    bf16: bool = True  # bfloat16 autocast on CUDA (CPU always runs float32)
    log_every: int = 10  # steps between metric rows


@dataclass
class OptimSection:
    """AdamW with linear warmup and cosine decay."""

    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of lr
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # weights evaluated and saved: a moving average of the trained ones with this decay (0.99
    # averages over about the last 100 steps); 0 keeps the last weights
    ema_decay: float = 0.0


@dataclass
class EvalSection:
    """Held-out evaluation at intervals and at the end, and the Markov baseline."""

    every: int = 200  # steps between evaluations
    max_tokens: int = 131072  # held-out tokens scored per interval evaluation
    final_max_tokens: int | None = None  # None = every held-out token at the end
    batch_size: int = 8  # windows per evaluation forward pass (per rank)
    markov_max_order: int = 12  # best order-k Markov baseline, k <= this; 0 = no baseline
    markov_smoothing: str = "kneser_ney"  # "kneser_ney" (interpolated) or "add_one"


@dataclass
class CheckpointSection:
    """Resumable checkpoints under OUT/checkpoints/step-XXXXXXXX/."""

    every: int = 100  # steps between checkpoints (one is always written at the end)
    keep: int = 3  # newest checkpoints kept


@dataclass
class PretrainConfig:
    """The whole pretraining configuration (see config/pretrain/*.yaml)."""

    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    optim: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)

    def model_config(self) -> TitansConfig:
        """The resolved TitansConfig."""
        return self.model.build()


def load_config(
    path: str | Path | None = None, sets: list[str] | None = None, stores: list[str] | None = None
) -> PretrainConfig:
    """Read `path` (or defaults), apply `--set` overrides and `--store` paths, validate."""
    config = PretrainConfig()
    source = str(path) if path is not None else "configuration"
    if path is not None:
        _apply_mapping(config, _read_yaml(Path(path)), source)
    for item in sets or []:
        key, value = parse_setting(item)
        _assign(config, key, value, f"--set {item}")
    if stores:
        config.data.stores = [str(s) for s in stores]
    check_config(config, source)
    return config


def check_config(config: PretrainConfig, source: str) -> None:
    """Cross-field checks; each failure is one line naming `source` and the key."""
    try:
        config.model_config()
    except ValueError as err:
        raise PipelineError(f"{source}: model: {err}") from None
    d, t, o, e, c = config.data, config.train, config.optim, config.eval, config.checkpoint
    rules = [
        (bool(d.stores), "data.stores is empty: name at least one token store (or use --store)"),
        (
            d.weights is None or len(d.weights) == len(d.stores),
            f"data.weights has {len(d.weights or [])} entries for {len(d.stores)} stores",
        ),
        (d.weights is None or all(w >= 0 for w in d.weights), "data.weights must be >= 0"),
        (d.weights is None or sum(d.weights) > 0, "data.weights must not all be 0"),
        (0.0 <= d.max_n_fraction <= 1.0, "data.max_n_fraction must be in [0, 1]"),
        (d.softmask_weight >= 0.0, "data.softmask_weight must be >= 0"),
        (0.0 <= d.val_fraction < 1.0, "data.val_fraction must be in [0, 1)"),
        (0.0 <= d.plant_repeats <= 1.0, "data.plant_repeats must be in [0, 1]"),
        (_valid_repeats(config), _repeats_problem(config)),
        (t.context >= 2, "train.context must be >= 2"),
        (t.batch_size >= 1 and t.grad_accum >= 1, "train.batch_size and grad_accum must be >= 1"),
        (
            t.batch_size % t.grad_accum == 0,
            f"train.batch_size ({t.batch_size}) must be a multiple of train.grad_accum "
            f"({t.grad_accum})",
        ),
        (t.max_steps >= 1, "train.max_steps must be >= 1"),
        (t.max_minutes is None or t.max_minutes > 0, "train.max_minutes must be > 0"),
        (t.log_every >= 1, "train.log_every must be >= 1"),
        (t.seqlen_warmup_steps >= 0, "train.seqlen_warmup_steps must be >= 0"),
        (_valid_warmup_start(t), _warmup_problem(t)),
        (t.stream_windows >= 1, "train.stream_windows must be >= 1"),
        (t.stream_interleave >= 1, "train.stream_interleave must be >= 1"),
        (_streamable(config), _stream_problem(config)),
        (o.lr > 0 and math.isfinite(o.lr), "optim.lr must be a positive number"),
        (0.0 <= o.min_lr_ratio <= 1.0, "optim.min_lr_ratio must be in [0, 1]"),
        (o.warmup_steps >= 0 and o.weight_decay >= 0, "optim.warmup_steps/weight_decay >= 0"),
        (0.0 <= o.beta1 < 1.0 and 0.0 <= o.beta2 < 1.0, "optim.beta1/beta2 must be in [0, 1)"),
        (o.eps > 0 and o.grad_clip >= 0, "optim.eps must be > 0 and optim.grad_clip >= 0"),
        (0.0 <= o.ema_decay < 1.0, "optim.ema_decay must be in [0, 1)"),
        (e.every >= 1 and e.batch_size >= 1, "eval.every and eval.batch_size must be >= 1"),
        (e.max_tokens >= 1, "eval.max_tokens must be >= 1"),
        (e.final_max_tokens is None or e.final_max_tokens >= 1, "eval.final_max_tokens >= 1"),
        (0 <= e.markov_max_order <= 12, "eval.markov_max_order must be in 0..12"),
        (e.markov_smoothing in SMOOTHINGS, f"eval.markov_smoothing must be one of {SMOOTHINGS}"),
        (c.every >= 1 and c.keep >= 1, "checkpoint.every and checkpoint.keep must be >= 1"),
    ]
    for ok, problem in rules:
        if not ok:
            raise PipelineError(f"{source}: {problem}")


def _valid_repeats(config: PretrainConfig) -> bool:
    d, shortest = config.data, _shortest_context(config.train)
    if not d.plant_repeats:
        return True
    if len(d.repeat_distance) != 2 or d.repeat_segment < 1:
        return False
    low, high = d.repeat_distance
    return d.repeat_segment <= low <= high and high + d.repeat_segment < shortest


def _repeats_problem(config: PretrainConfig) -> str:
    d, shortest = config.data, _shortest_context(config.train)
    return (
        f"data.repeat_distance {d.repeat_distance} must be [min, max] with data.repeat_segment "
        f"({d.repeat_segment}) <= min <= max and max + repeat_segment < the shortest training "
        f"context ({shortest})"
    )


def _valid_warmup_start(t: TrainSection) -> bool:
    start = t.seqlen_warmup_start
    if start is None:
        return True
    ratio = t.context // start if start > 0 else 0
    return start >= 2 and t.context % start == 0 and ratio & (ratio - 1) == 0


def _streamable(config: PretrainConfig) -> bool:
    """Streams continue the model state, so every stage's context must keep it aligned."""
    t = config.train
    if t.stream_windows == 1:
        return True
    multiple = config.model_config().stream_multiple
    return all(c % multiple == 0 for c in (t.context, _shortest_context(t)))


def _shortest_context(t: TrainSection) -> int:
    """The first stage's context with sequence-length warmup, else train.context."""
    return (t.seqlen_warmup_start if t.seqlen_warmup_steps else None) or t.context


def _stream_problem(config: PretrainConfig) -> str:
    return (
        "train.stream_windows > 1 carries the model state from window to window: train.context "
        "and train.seqlen_warmup_start must be multiples of "
        f"{config.model_config().stream_multiple} (the model's stream_multiple)"
    )


def _warmup_problem(t: TrainSection) -> str:
    return (
        f"train.seqlen_warmup_start ({t.seqlen_warmup_start}) must be >= 2 and divide "
        f"train.context ({t.context}) by a power of two"
    )


def config_to_dict(config: PretrainConfig) -> dict[str, Any]:
    """The resolved configuration as a dict; the model section lists every TitansConfig field."""
    data = dataclasses.asdict(config)
    data["model"] = {"preset": config.model.preset, **config.model_config().to_dict()}
    return data


def save_config(config: PretrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (loadable again with `load_config`)."""
    text = "# Resolved titans-dna pretrain configuration.\n"
    text += yaml.safe_dump(config_to_dict(config), sort_keys=False)
    Path(path).write_text(text)


def config_from_dict(data: dict[str, Any], source: str) -> PretrainConfig:
    """Rebuild a configuration from `config_to_dict` output (as stored in checkpoints)."""
    config = PretrainConfig()
    _apply_mapping(config, data, source)
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read configuration ({err.strerror or err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: not valid YAML ({_one_line(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: the configuration must be a mapping of sections")
    return data


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _apply_mapping(config: PretrainConfig, data: dict[str, Any], source: str) -> None:
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                _assign(config, f"{section}.{key}", value, source)
        else:
            _assign(config, str(section), values, source)


def _assign(config: PretrainConfig, dotted: str, value: Any, source: str) -> None:
    """Set one dotted key (e.g. `optim.lr`) after checking that it exists and its type."""
    parts = dotted.split(".")
    if parts[0] == "model" and len(parts) > 1:
        if len(parts) > 2:
            raise PipelineError(f"{source}: unknown key '{dotted}' (model fields are not sections)")
        _assign_model(config.model, parts[1], value, source)
        return
    target: Any = config
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(type(target))
        if part not in hints:
            where = ".".join(parts[:depth]) or "the top level"
            known = ", ".join(hints)
            raise PipelineError(f"{source}: unknown key '{dotted}' ({where} has: {known})")
        hint = hints[part]
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(hint):
                if value is None:  # an empty section in YAML
                    return
                raise PipelineError(f"{source}: '{dotted}' is a section; set one of its keys")
            setattr(target, part, _coerce(value, hint, dotted, source))
            return
        if not dataclasses.is_dataclass(hint):
            raise PipelineError(f"{source}: unknown key '{dotted}' ('{part}' is not a section)")
        target = getattr(target, part)


def _assign_model(model: ModelSection, key: str, value: Any, source: str) -> None:
    if key == "preset":
        model.preset = _coerce(value, str, "model.preset", source)
        return
    hints = typing.get_type_hints(TitansConfig)
    if key not in hints:
        known = ", ".join(["preset", *hints])
        raise PipelineError(f"{source}: unknown key 'model.{key}' (model has: {known})")
    model.overrides[key] = _coerce(value, hints[key], f"model.{key}", source)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` checked against the type hint; ints widen to float, numeric strings to float."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(key, source, "a list", value)
        return [_coerce(item, args[0], key, source) for item in value]
    if hint is float:
        return _as_float(value, key, source)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, source, "an integer", value)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _type_error(key, source, "true or false", value)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _type_error(key, source, "a string", value)
        return value
    raise PipelineError(f"{source}: {key}: unsupported type {hint}")


def _as_float(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool):
        raise _type_error(key, source, "a number", value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        # YAML 1.1 reads exponent forms without a dot (1e-3) as strings.
        try:
            return float(value)
        except ValueError:
            pass
    raise _type_error(key, source, "a number", value)


def _type_error(key: str, source: str, expected: str, value: Any) -> PipelineError:
    return PipelineError(f"{source}: {key} must be {expected}, got {value!r}")
