"""`TitansLM`: the next-nucleotide language model (embedding, Titans blocks, norm, LM head)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from titans_dna.layers.blocks import BLOCKS
from titans_dna.layers.norm import rms_norm
from titans_dna.layers.precision import working_dtype
from titans_dna.models.checkpoint import (
    CheckpointError,
    load_weights,
    read_checkpoint_meta,
    save_checkpoint,
)
from titans_dna.models.config import TitansConfig

MODEL_TYPE = "titans-lm"
_INIT_STD = 0.02
_PROJECTIONS = (
    "proj.weight",
    "gate_up.weight",
    "out_gate.weight",
    "gates.weight",
    "embedding.weight",
    "lm_head.weight",
)


@dataclass
class TitansState:
    """Streaming state of a TitansLM: one state per block and the number of tokens consumed so
    far (used to refuse continuing a stream whose earlier pieces broke chunk/segment alignment).
    Its size does not depend on how many tokens were consumed."""

    layers: list[Any]
    position: int

    def detach(self) -> TitansState:
        """The same state cut from the autograd graph (truncated backpropagation through time)."""
        return TitansState(_map_tensors(self.layers, torch.Tensor.detach), self.position)

    def to(self, *args: Any, **kwargs: Any) -> TitansState:
        """`Tensor.to` applied to every tensor of the state (device and/or dtype)."""
        return TitansState(
            _map_tensors(self.layers, lambda t: t.to(*args, **kwargs)), self.position
        )

    @staticmethod
    def cat(states: list[TitansState]) -> TitansState:
        """One state of all the streams of `states`, batch after batch (equal tensor shapes
        but for the batch axis, and positions equal modulo the streaming unit)."""
        return TitansState(_cat_tensors([s.layers for s in states]), states[0].position)

    def signature(self) -> tuple:
        """The shapes of the state's tensors without the batch axis: states with the same
        signature can be concatenated."""
        shapes: list[tuple[int, ...]] = []
        _map_tensors(self.layers, lambda t: shapes.append(tuple(t.shape[1:])) or t)
        return tuple(shapes)


def _cat_tensors(objs: list[Any]) -> Any:
    """The structures `objs` (alike) with their tensors concatenated along dimension 0."""
    first = objs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(objs, dim=0)
    if dataclasses.is_dataclass(first):
        fields = dataclasses.fields(first)
        return type(first)(
            **{f.name: _cat_tensors([getattr(o, f.name) for o in objs]) for f in fields}
        )
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(_cat_tensors(list(items)) for items in zip(*objs, strict=True)))
    if isinstance(first, (tuple, list)):
        return type(first)(_cat_tensors(list(items)) for items in zip(*objs, strict=True))
    return first


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply `fn` to every tensor inside nested dataclasses, (named) tuples and lists."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj):
        return type(obj)(
            **{f.name: _map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)}
        )
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_map_tensors(item, fn) for item in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(item, fn) for item in obj)
    return obj


class TitansLM(nn.Module):
    """Titans DNA language model.

    forward(tokens [B, T] long, state | None) -> (logits [B, T, vocab], hidden [B, T, d_model]
    after the final norm, state). Set `gradient_checkpointing = True` to recompute each block's
    activations in the backward pass (training only).
    """

    def __init__(self, config: TitansConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        block = BLOCKS[config.variant]
        self.blocks = nn.ModuleList(block(config) for _ in range(config.n_layers))
        self.final_norm = rms_norm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0.02) for embeddings and projections; the projections that write into the
        residual stream are scaled by 1/sqrt(2 n_layers) so its variance does not grow with
        depth. Memory initial weights, convs, gate biases and norms keep their own init."""
        residual_std = _INIT_STD / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith(("out_proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, std=residual_std)
            elif name.endswith(_PROJECTIONS):
                nn.init.normal_(param, std=_INIT_STD)

    def forward(
        self, tokens: torch.Tensor, state: TitansState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, TitansState]:
        self._check_continuation(state)
        x = self.embedding(tokens)
        layer_states = state.layers if state is not None else [None] * len(self.blocks)
        new_states = []
        for block, layer_state in zip(self.blocks, layer_states, strict=True):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, layer_state = checkpoint(block, x, layer_state, use_reentrant=False)
            else:
                x, layer_state = block(x, layer_state)
            new_states.append(layer_state)
        hidden = self.final_norm(x)
        position = (state.position if state is not None else 0) + tokens.shape[1]
        return self.lm_head(hidden), hidden, TitansState(new_states, position)

    def _check_continuation(self, state: TitansState | None) -> None:
        if state is None:
            return
        multiple = self.config.stream_multiple
        if state.position % multiple:
            raise ValueError(
                f"cannot continue a stream after {state.position} tokens: every piece but the "
                f"last must be a multiple of {multiple} tokens "
                f"({'segment_len' if self.config.variant == 'mac' else 'chunk_size'})"
            )
        if len(state.layers) != len(self.blocks):
            raise ValueError(
                f"state has {len(state.layers)} layer states, the model {len(self.blocks)} blocks"
            )

    def reset_memory(self, state: TitansState) -> TitansState:
        """``state`` with every block's memory back at its learned initial state and attention
        caches kept: the memory-off ablation, when applied at every window boundary."""
        layers = [block.reset_memory(s) for block, s in zip(self.blocks, state.layers, strict=True)]
        return TitansState(layers, state.position)

    def log_likelihood(self, tokens: torch.Tensor, *, piece_len: int | None = None) -> torch.Tensor:
        """Sum over positions of log p(token_t | tokens_<t), t >= 1, per sequence: [B].

        Targets equal to the pad or N id are not scored. piece_len streams the sequence through
        the recurrent state in pieces of that many tokens (a multiple of `stream_multiple`),
        bounding memory for sequences of any length; the result equals one pass.
        """
        if piece_len is None:
            logits = self(tokens)[0]
            return self._score(logits[:, :-1], tokens[:, 1:])
        if piece_len < 1 or piece_len % self.config.stream_multiple:
            raise ValueError(
                f"piece_len must be a positive multiple of {self.config.stream_multiple}, "
                f"got {piece_len}"
            )
        total, state, last = 0.0, None, None
        for piece in tokens.split(piece_len, dim=1):
            logits, _, state = self(piece, state)
            if last is not None:  # the previous piece's last position predicts this first token
                total = total + self._score(last, piece[:, :1])
            total = total + self._score(logits[:, :-1], piece[:, 1:])
            last = logits[:, -1:]
        return total

    def _score(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Sum of log-probabilities of `targets` [B, T] under `logits` [B, T, V], masked: [B]."""
        logp = F.log_softmax(logits.to(working_dtype(logits.dtype)), dim=-1).gather(
            -1, targets[..., None]
        )[..., 0]
        scored = (targets != self.config.pad_id) & (targets != self.config.n_id)
        return (logp * scored).sum(dim=1)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write directory/config.json and directory/model.safetensors atomically (an existing
        folder is replaced as a whole)."""
        return save_checkpoint(self, directory, model_type=MODEL_TYPE, config=self.config.to_dict())

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> TitansLM:
        """Load a save_pretrained folder; CheckpointError if it is not a matching TitansLM."""
        return cls.from_meta(
            read_checkpoint_meta(directory, model_type=MODEL_TYPE), directory, map_location
        )

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], directory: str | Path, map_location: str = "cpu"
    ) -> TitansLM:
        """The model described by an already read config.json, with the weights of `directory`."""
        model = cls(config_from_meta(meta, directory))
        load_weights(model, directory)
        return model.to(map_location).eval()


def config_from_meta(meta: dict[str, Any], directory: str | Path) -> TitansConfig:
    """The TitansConfig stored in a checkpoint's config.json, or CheckpointError."""
    try:
        return TitansConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(directory)}: invalid model config ({err})") from err
