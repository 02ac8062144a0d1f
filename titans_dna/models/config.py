"""`TitansConfig`: every architecture hyper-parameter of a Titans DNA model, serialised as JSON."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

MEMORY_VARIANTS = ("lmm", "mac", "mag", "mal")
# "swa": sliding-window attention only, no memory: the ablation the memory is measured against
VARIANTS = (*MEMORY_VARIANTS, "swa")
MEMORY_ACTIVATIONS = ("silu", "gelu", "relu")
MEMORY_IMPLS = ("auto", "naive", "chunk", "triton")
MEMORY_UPDATES = ("normalized", "paper")

# Presets. tiny runs on a laptop CPU (the demo workflow); small and base are GPU sizes.
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        d_model=64,
        n_layers=2,
        n_heads=2,
        memory_depth=2,
        memory_expansion=2,
        chunk_size=64,
        segment_len=256,
        window=256,
        n_persistent=4,
    ),
    "small": dict(
        d_model=256,
        n_layers=6,
        n_heads=4,
        memory_depth=2,
        memory_expansion=2,
        chunk_size=64,
        segment_len=512,
        window=512,
        n_persistent=8,
    ),
    "base": dict(
        d_model=512,
        n_layers=12,
        n_heads=8,
        memory_depth=2,
        memory_expansion=4,
        chunk_size=64,
        segment_len=1024,
        window=1024,
        n_persistent=16,
    ),
}


@dataclass
class TitansConfig:
    """Architecture of a Titans DNA language model (paper: Behrouz et al. 2025, arXiv 2501.00663).

    variant: "lmm" (memory only), "mac" (memory as context), "mag" (memory as gate),
    "mal" (memory as layer), or "swa" (sliding-window attention without memory: an ablation).
    The memory is per head: head_dim = d_model // n_heads; an MLP memory (memory_depth >= 2) has
    hidden width memory_expansion * head_dim. Streaming a sequence in pieces equals one pass
    when every piece but the last is a multiple of `stream_multiple`.
    """

    vocab_size: int = 10
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    memory_depth: int = 2
    memory_expansion: int = 2
    chunk_size: int = 64
    segment_len: int = 256
    window: int = 256
    n_persistent: int = 4
    variant: str = "mac"
    dropout: float = 0.0
    conv_kernel: int = 4
    # Cap of the memory's per-token learning rate θ. The normalized update bounds every chunk's
    # step whatever θ (gradient norms at 16k-64k tokens do not change from 1 to 100); the paper's
    # update needs a small cap (<= 0.03 at long context) or its gradients explode with length.
    theta_max: float = 1.0
    max_surprise_norm: float | None = 1.0
    mlp_ratio: float = 4.0
    rope_base: float = 10000.0
    memory_activation: str = "silu"
    memory_residual: bool = False
    memory_update: str = "normalized"
    memory_impl: str = "auto"
    pad_id: int = 0
    n_id: int = 9

    def __post_init__(self) -> None:
        self._check_types()
        self._check_values()

    def _check_types(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if kind == "bool":
                ok = isinstance(value, bool)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind in ("float", "float | None"):
                if isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                    setattr(self, f.name, value)
                ok = isinstance(value, float) or (kind == "float | None" and value is None)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ValueError(f"TitansConfig.{f.name} must be {kind}, got {value!r}")

    def _check_values(self) -> None:
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "memory_depth")
        positive += ("memory_expansion", "chunk_size", "segment_len", "window", "conv_kernel")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TitansConfig.{name} must be >= 1, got {getattr(self, name)}")
        _require(
            self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}"
        )
        _require(
            self.memory_impl in MEMORY_IMPLS,
            f"memory_impl must be one of {MEMORY_IMPLS}, got {self.memory_impl!r}",
        )
        _require(
            self.memory_update in MEMORY_UPDATES,
            f"memory_update must be one of {MEMORY_UPDATES}, got {self.memory_update!r}",
        )
        _require(
            self.memory_activation in MEMORY_ACTIVATIONS,
            f"memory_activation must be one of {MEMORY_ACTIVATIONS}, "
            f"got {self.memory_activation!r}",
        )
        _require(
            self.d_model % self.n_heads == 0,
            f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
        )
        _require(
            self.variant == "lmm" or self.head_dim % 2 == 0,
            f"rotary attention needs an even head_dim, got {self.head_dim}",
        )
        _require(
            self.segment_len % self.chunk_size == 0,
            f"segment_len ({self.segment_len}) must be a multiple of "
            f"chunk_size ({self.chunk_size})",
        )
        _require(self.n_persistent >= 0, f"n_persistent must be >= 0, got {self.n_persistent}")
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _require(
            math.isfinite(self.theta_max) and self.theta_max > 0,
            f"theta_max must be > 0, got {self.theta_max}",
        )
        _require(
            self.max_surprise_norm is None or self.max_surprise_norm > 0,
            f"max_surprise_norm must be > 0 or None, got {self.max_surprise_norm}",
        )
        _require(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        _require(self.rope_base > 1, f"rope_base must be > 1, got {self.rope_base}")
        for name in ("pad_id", "n_id"):
            value = getattr(self, name)
            _require(
                0 <= value < self.vocab_size,
                f"{name} ({value}) must be a token id below vocab_size ({self.vocab_size})",
            )

    @property
    def head_dim(self) -> int:
        """Per-head width of attention and memory."""
        return self.d_model // self.n_heads

    @property
    def memory_hidden(self) -> int:
        """Hidden width of an MLP memory (memory_depth >= 2)."""
        return self.memory_expansion * self.head_dim

    @property
    def mlp_hidden(self) -> int:
        """SwiGLU hidden width: 2/3 of mlp_ratio * d_model (parameter-matched to a GELU MLP),
        rounded up to a multiple of 16."""
        hidden = int(2 * self.mlp_ratio * self.d_model / 3)
        return 16 * math.ceil(hidden / 16)

    @property
    def stream_multiple(self) -> int:
        """Piece lengths that make streaming exact: segment_len for MAC, else chunk_size."""
        return self.segment_len if self.variant == "mac" else self.chunk_size

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TitansConfig:
        """Build from `to_dict` output; unknown keys are an error (they signal a version skew)."""
        if not isinstance(data, dict):
            raise ValueError(f"TitansConfig.from_dict needs a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TitansConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TitansConfig:
        """A named size ("tiny", "small", "base") with any field overridden."""
        return preset(name, **overrides)


def preset(name: str, **overrides: Any) -> TitansConfig:
    """A named size ("tiny": CPU demo; "small", "base": GPU) with any field overridden."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(_PRESETS)}")
    return TitansConfig.from_dict({**_PRESETS[name], **overrides})


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(f"TitansConfig: {message}")
