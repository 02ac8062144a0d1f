"""Launch parameters of the fused memory kernels, their launches, and a shared-memory check.

Block sizes were chosen so that, compiled for sm_90 (H100/H200), every supported configuration
fits the 227 KiB of shared memory a block may use; ``resource_reason`` checks the actual
compiled kernels against the actual device, so a GPU with less falls back instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from titans_dna.ops.memory.triton_bwd import linear_bwd_kernel, mlp_bwd_kernel
from titans_dna.ops.memory.triton_fwd import linear_fwd_kernel, mlp_fwd_kernel

ACTIVATION_CODES = {"silu": 0, "gelu": 1, "relu": 2}
INTERPRETED = isinstance(linear_fwd_kernel, InterpretedFunction)


def _block(n: int) -> int:
    """Power-of-two tile width ≥ 16 (the minimum of tl.dot) covering n."""
    return max(16, 1 << (n - 1).bit_length())


@dataclass(frozen=True)
class KernelConfig:
    """Static parameters of one call (shapes, memory function, tiles, matrix-product precision)."""

    batch: int
    length: int
    heads: int
    dim: int
    hidden: int
    depth: int
    chunk: int
    act: int
    residual: bool
    clip: bool
    tau: float
    norm: bool
    save: bool
    prec: str

    @classmethod
    def for_call(
        cls,
        q: Tensor,
        hidden: int,
        depth: int,
        chunk_size: int,
        activation: str,
        residual: bool,
        max_surprise_norm: float | None,
        update: str,
        save: bool,
    ) -> KernelConfig:
        batch, length, heads, dim = q.shape
        clip = max_surprise_norm is not None
        # float32 inputs: TF32 products (the IEEE float32 path of tl.dot spills heavily);
        # 16-bit inputs: bfloat16 operands. Accumulation and the state are float32 either way.
        prec = "bf16-emulated" if INTERPRETED else "bf16"
        prec = "tf32" if q.dtype == torch.float32 else prec
        return cls(
            batch, length, heads, dim, hidden, depth, chunk_size, ACTIVATION_CODES[activation],
            residual, clip, float(max_surprise_norm) if clip else 1.0, update == "normalized",
            save, prec,
        )  # fmt: skip

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.chunk)

    @property
    def block_d(self) -> int:
        return _block(self.dim)

    @property
    def block_f(self) -> int:
        return _block(self.hidden)

    @property
    def block_v_fwd(self) -> int:
        """Output rows per program of the linear forward (all rows when clipping: the clip
        factor needs each token's whole error vector)."""
        if self.clip:
            return self.block_d
        return min(self.block_d, 64 if self.block_d <= 64 or self.prec != "tf32" else 32)

    @property
    def block_v_bwd(self) -> int:
        if self.clip:
            return self.block_d
        return min(self.block_d, 32 if self.block_d <= 64 or self.prec != "tf32" else 16)

    @property
    def warps(self) -> int:
        return 4 if max(self.block_d, self.block_f, self.chunk) <= 32 else 8


@dataclass(frozen=True)
class Launch:
    """One kernel launch: kernel[grid](*args, **meta)."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple
    meta: dict

    def __call__(self) -> None:
        self.kernel[self.grid](*self.args, **self.meta)

    def shared_bytes(self) -> int:
        """Shared memory per block of the compiled kernel (compiles it; launches nothing)."""
        return self.kernel.warmup(*self.args, grid=self.grid, **self.meta).metadata.shared


def linear_fwd(cfg: KernelConfig, inputs: tuple, outputs: tuple) -> Launch:
    """inputs: q, k, v, θ, log(1-α), log η, W0, S0; outputs: y, W_end, S_end, W_chk, S_chk."""
    meta = dict(
        D=cfg.dim, BD=cfg.block_d, BV=cfg.block_v_fwd, BT=cfg.chunk,
        CLIP=cfg.clip, NORM=cfg.norm, SAVE=cfg.save, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip
    grid = (cfg.batch * cfg.heads, -(-cfg.dim // cfg.block_v_fwd))
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    return Launch(linear_fwd_kernel, grid, (*inputs, *outputs, *ints), meta)


def linear_bwd(cfg: KernelConfig, saved: tuple, grads_out: tuple, grads_in: tuple) -> Launch:
    """saved: q, k, v, θ, log(1-α), log η, W_chk, S_chk; grads_out: dy, dW_end, dS_end;
    grads_in: dq, dk (partial [NV, ...]), dv, dθ, dlog(1-α), dlog η (partial), dW0, dS0."""
    meta = dict(
        D=cfg.dim, BD=cfg.block_d, BV=cfg.block_v_bwd, BT=cfg.chunk,
        CLIP=cfg.clip, NORM=cfg.norm, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip
    grid = (cfg.batch * cfg.heads, -(-cfg.dim // cfg.block_v_bwd))
    ints = (cfg.batch, cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    return Launch(linear_bwd_kernel, grid, (*saved, *grads_out, *grads_in, *ints), meta)


def _mlp_meta(cfg: KernelConfig) -> dict:
    return dict(
        D=cfg.dim, F=cfg.hidden, BD=cfg.block_d, BF=cfg.block_f, BT=cfg.chunk, ACT=cfg.act,
        RES=cfg.residual, CLIP=cfg.clip, NORM=cfg.norm, PREC=cfg.prec, num_warps=cfg.warps,
    )  # fmt: skip


def mlp_fwd(cfg: KernelConfig, inputs: tuple, outputs: tuple) -> Launch:
    """inputs: q, k, v, θ, log(1-α), log η, W1, S1, W2, S2; outputs: y, four end states,
    four chunk-start state buffers."""
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    meta = {**_mlp_meta(cfg), "SAVE": cfg.save}
    return Launch(mlp_fwd_kernel, (cfg.batch * cfg.heads,), (*inputs, *outputs, *ints), meta)


def mlp_bwd(cfg: KernelConfig, saved: tuple, grads_out: tuple, grads_in: tuple) -> Launch:
    """saved: q, k, v, θ, log(1-α), log η, four chunk-start buffers; grads_out: dy, four end-state
    gradients; grads_in: dq, dk, dv, dθ, dlog(1-α), dlog η, four initial-state gradients."""
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    args = (*saved, *grads_out, *grads_in, *ints)
    return Launch(mlp_bwd_kernel, (cfg.batch * cfg.heads,), args, _mlp_meta(cfg))


def resource_reason(cfg: KernelConfig, q: Tensor, k: Tensor, v: Tensor) -> str | None:
    """Why the compiled kernels of this call cannot launch on q's CUDA device, or None.

    Compiles (through Triton's cache: the real launch reuses the result) the forward kernel and,
    when gradients are needed, the backward kernel, with stand-in buffers of the right dtypes,
    and compares their shared memory with the device's per-block limit.
    """
    import triton

    with torch.cuda.device(q.device):
        f32 = torch.empty(16, dtype=torch.float32, device=q.device)
        gates = (f32, f32, f32)
        layers = 1 if cfg.depth == 1 else 2
        states = (f32,) * 2 * layers
        qkv = (q, k, v)
        if cfg.depth == 1:
            launches = [linear_fwd(cfg, (*qkv, *gates, *states), (q, *states, *states))]
            bwd = linear_bwd(
                cfg, (*qkv, *gates, *states), (q, *states), (f32, f32, v, *gates, *states)
            )
        else:
            launches = [mlp_fwd(cfg, (*qkv, *gates, *states), (q, *states, *states))]
            bwd = mlp_bwd(
                cfg, (*qkv, *gates, *states), (q, *states), (f32, f32, v, *gates, *states)
            )
        if cfg.save:
            launches.append(bwd)
        limit = triton.runtime.driver.active.utils.get_device_properties(q.device.index)
        limit = limit["max_shared_mem"]
        for launch in launches:
            need = launch.shared_bytes()
            if need > limit:
                name = launch.kernel.fn.__name__
                return (
                    f"impl='triton': {name} needs {need} bytes of shared memory per block for "
                    f"this shape, the device allows {limit}"
                )
    return None
