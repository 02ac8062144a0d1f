"""Launch parameters of the fused memory kernels, their launches, and a shared-memory check.

``resource_reason`` checks the compiled kernels of a call against the actual device (shared
memory per block; a compile error counts too), so that ``impl="auto"`` falls back to chunk.py with
a reason instead of failing. ``planned_launches`` gives the launches of a call with dtypes for
tensors: ``triton_compile`` compiles the same launches ahead of time for sm_90 and sm_100, and
``bench/kernel_resources.py`` tabulates their shared memory, registers and spills per preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
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
        shape: tuple[int, ...],
        dtype: torch.dtype,
        hidden: int,
        depth: int,
        chunk_size: int,
        activation: str,
        residual: bool,
        max_surprise_norm: float | None,
        update: str,
        save: bool,
    ) -> KernelConfig:
        """shape: q's [B, T, H, D]; dtype: q/k/v's dtype."""
        batch, length, heads, dim = shape
        clip = max_surprise_norm is not None
        # float32 inputs: TF32 products (the IEEE float32 path of tl.dot spills heavily);
        # 16-bit inputs: bfloat16 operands. Accumulation and the state are float32 either way.
        prec = "bf16-emulated" if INTERPRETED else "bf16"
        prec = "tf32" if dtype == torch.float32 else prec
        return cls(
            batch, length, heads, dim, hidden, depth, chunk_size, ACTIVATION_CODES[activation],
            residual, clip, float(max_surprise_norm) if clip else 1.0, update == "normalized",
            save, prec,
        )  # fmt: skip

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.chunk)

    @property
    def state_slots(self) -> int:
        """Chunk-state slots of the forward's buffers: the linear memory keeps its state in
        registers and saves each chunk's start (NC) for the backward; the MLP memory keeps its
        state in the slots, all NC + 1 for the backward, else two in alternation."""
        if self.depth == 1:
            return self.n_chunks if self.save else 0
        return self.n_chunks + 1 if self.save else 2

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
    def stages(self) -> int:
        """Software-pipelining stages of the chunk loop. One: every chunk depends on the previous
        chunk's state, so prefetching the next chunk's tiles only multiplies shared memory (the
        MLP backward at D=64, F=128 needs 413,696 bytes with Triton's default against 147,456)."""
        return 1

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

    def compile(self) -> Any:
        """The compiled kernel for the current device (compiles it; launches nothing)."""
        return self.kernel.warmup(*self.args, grid=self.grid, **self.meta)


def _options(cfg: KernelConfig) -> dict:
    """Launch options (not kernel arguments). Fused multiply-add stays on explicitly: the
    kernels were validated with it, and Triton's default is changing."""
    return {"num_warps": cfg.warps, "num_stages": cfg.stages, "enable_fp_fusion": True}


def linear_fwd(cfg: KernelConfig, inputs: tuple, outputs: tuple) -> Launch:
    """inputs: q, k, v, θ, log(1-α), log η, W0, S0; outputs: y, W_end, S_end, W_chk, S_chk."""
    meta = dict(
        D=cfg.dim, BD=cfg.block_d, BV=cfg.block_v_fwd, BT=cfg.chunk,
        CLIP=cfg.clip, NORM=cfg.norm, SAVE=cfg.save, PREC=cfg.prec,
    ) | _options(cfg)  # fmt: skip
    grid = (cfg.batch * cfg.heads, -(-cfg.dim // cfg.block_v_fwd))
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    return Launch(linear_fwd_kernel, grid, (*inputs, *outputs, *ints), meta)


def linear_bwd(cfg: KernelConfig, saved: tuple, grads_out: tuple, grads_in: tuple) -> Launch:
    """saved: q, k, v, θ, log(1-α), log η, W_chk, S_chk; grads_out: dy, dW_end, dS_end;
    grads_in: dq, dk (partial [NV, ...]), dv, dθ, dlog(1-α), dlog η (partial), dW0, dS0."""
    meta = dict(
        D=cfg.dim, BD=cfg.block_d, BV=cfg.block_v_bwd, BT=cfg.chunk,
        CLIP=cfg.clip, NORM=cfg.norm, PREC=cfg.prec,
    ) | _options(cfg)  # fmt: skip
    grid = (cfg.batch * cfg.heads, -(-cfg.dim // cfg.block_v_bwd))
    ints = (cfg.batch, cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    return Launch(linear_bwd_kernel, grid, (*saved, *grads_out, *grads_in, *ints), meta)


def _mlp_meta(cfg: KernelConfig) -> dict:
    return dict(
        D=cfg.dim, F=cfg.hidden, BD=cfg.block_d, BF=cfg.block_f, BT=cfg.chunk, ACT=cfg.act,
        RES=cfg.residual, CLIP=cfg.clip, NORM=cfg.norm, PREC=cfg.prec,
    ) | _options(cfg)  # fmt: skip


def mlp_fwd(cfg: KernelConfig, inputs: tuple, outputs: tuple) -> Launch:
    """inputs: q, k, v, θ, log(1-α), log η, W1, S1, W2, S2; outputs: y, four end states,
    four chunk-state slot buffers, the Zq buffer."""
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.state_slots, cfg.tau)
    meta = {**_mlp_meta(cfg), "SAVE": cfg.save}
    return Launch(mlp_fwd_kernel, (cfg.batch * cfg.heads,), (*inputs, *outputs, *ints), meta)


def mlp_bwd(cfg: KernelConfig, saved: tuple, grads_out: tuple, grads_in: tuple) -> Launch:
    """saved: q, k, v, θ, log(1-α), log η, four chunk-start buffers, Zq; grads_out: dy, four
    end-state gradients; grads_in: dq, dk, dv, dθ, dlog(1-α), dlog η, four initial-state
    gradients, four [B*H, 2, ...] carry buffers."""
    ints = (cfg.length, cfg.heads, cfg.n_chunks, cfg.tau)
    args = (*saved, *grads_out, *grads_in, *ints)
    return Launch(mlp_bwd_kernel, (cfg.batch * cfg.heads,), args, _mlp_meta(cfg))


def planned_launches(cfg: KernelConfig, qkv: torch.dtype) -> list[Launch]:
    """The launches a call with ``cfg`` makes (forward, and backward when it saves for one), with
    dtypes standing in for the tensors: enough to compile them (``warmup`` or ahead of time)."""
    f32 = torch.float32
    gates = (f32, f32, f32)
    states = (f32,) * (2 if cfg.depth == 1 else 4)
    inputs = (qkv, qkv, qkv, *gates, *states)
    if cfg.depth == 1:
        launches = [linear_fwd(cfg, inputs, (qkv, *states, *states))]
        if cfg.save:
            grads_in = (f32, f32, qkv, *gates, *states)
            launches.append(linear_bwd(cfg, inputs, (qkv, *states), grads_in))
        return launches
    launches = [mlp_fwd(cfg, inputs, (qkv, *states, *states, f32))]
    if cfg.save:
        grads_in = (f32, f32, qkv, *gates, *states, *states)
        launches.append(mlp_bwd(cfg, (*inputs, f32), (qkv, *states), grads_in))
    return launches


def resource_reason(cfg: KernelConfig, device: torch.device, qkv: torch.dtype) -> str | None:
    """Why the compiled kernels of this call cannot launch on CUDA ``device``, or None.

    Compiles (through Triton's cache: the real launch reuses the result) the call's kernels and
    compares their shared memory with the device's per-block limit; a compile error is a reason
    too, so that ``impl="auto"`` falls back instead of failing.
    """
    limit = shared_limit(device)
    for launch in planned_launches(cfg, qkv):
        name = launch.kernel.fn.__name__
        try:
            compiled = compile_for(launch, device)
        except Exception as err:  # any compiler failure means "do not use"
            first = (str(err).strip().splitlines() or [""])[0][:200]
            return f"impl='triton': {name} failed to compile ({type(err).__name__}: {first})"
        need = compiled.metadata.shared
        if need > limit:
            return (
                f"impl='triton': {name} needs {need} bytes of shared memory per block for this "
                f"shape, the device allows {limit}"
            )
        if is_trap(compiled.asm["ptx"]):
            return f"impl='triton': Triton compiled {name} to a trap for this shape and GPU"
    return None


def shared_limit(device: torch.device) -> int:
    """Shared memory one block may use on CUDA ``device`` (bytes)."""
    import triton

    props = triton.runtime.driver.active.utils.get_device_properties(device.index)
    return props["max_shared_mem"]


def compile_for(launch: Launch, device: torch.device) -> Any:
    """``launch`` compiled for CUDA ``device`` (Triton's CompiledKernel; launches nothing)."""
    with torch.cuda.device(device):
        return launch.compile()


def is_trap(ptx: str) -> bool:
    """Whether a kernel's PTX does nothing but trap. Triton 3.9 lowers some kernels it cannot
    build for a target to a lone ``trap`` (seen for the larger MLP kernels on sm_100): they
    compile, fit anything, and abort at launch. Ours always read global memory otherwise."""
    return "trap;" in ptx and "ld.global" not in ptx
