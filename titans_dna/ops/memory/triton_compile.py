"""Ahead-of-time compilation of the fused memory kernels for a GPU that need not be present.

``compile_launch`` compiles one launch (the kernel, its argument dtypes and its launch settings,
exactly as ``triton_launch`` builds them for a call) for sm_90 (H100/H200) or sm_100 (B200) with
Triton's bundled ptxas, and reports the shared memory the launch needs, the registers per thread
and the spill bytes. It needs the triton package only: no GPU, no CUDA driver.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass

import torch

from titans_dna.ops.memory.triton_launch import INTERPRETED, KernelConfig, Launch, is_trap

# Compute capability, and the shared memory one block may opt into (227 KiB on both).
TARGETS = {"sm_90": (90, 232_448), "sm_100": (100, 232_448)}
_POINTER_TYPES = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "enable_fp_fusion")


@dataclass(frozen=True)
class CompiledKernel:
    """Resources of one compiled launch."""

    kernel: str
    target: str
    shared: int  # bytes per block
    shared_limit: int
    registers: int  # per thread
    spill_stores: int  # bytes per thread
    spill_loads: int
    warps: int
    trap: bool  # compiled to a trap: Triton could not lower it for this target

    @property
    def fits(self) -> bool:
        return self.shared <= self.shared_limit and not self.trap


def _arg_type(arg: object) -> str:
    if isinstance(arg, torch.Tensor | torch.dtype):
        dtype = arg.dtype if isinstance(arg, torch.Tensor) else arg
        return _POINTER_TYPES[dtype]
    if isinstance(arg, bool):
        return "i1"
    if isinstance(arg, int):
        return "i32"
    if isinstance(arg, float):
        return "fp32"
    raise TypeError(f"no Triton type for a kernel argument of type {type(arg).__name__}")


def _source(launch: Launch):
    """The launch as a Triton ASTSource: runtime argument types and constexpr values."""
    from triton.compiler import ASTSource

    fn = launch.kernel  # a JITFunction
    constexprs = {k: v for k, v in launch.meta.items() if k not in _LAUNCH_OPTIONS}
    runtime = [name for name in fn.arg_names if name not in constexprs]
    if len(runtime) != len(launch.args):
        raise ValueError(f"{fn.fn.__name__}: {len(launch.args)} arguments for {len(runtime)} slots")
    signature = {name: _arg_type(arg) for name, arg in zip(runtime, launch.args, strict=True)}
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    # pointers aligned to 16 bytes, as torch allocations are: the real launch specialises so too
    attrs = {
        (fn.arg_names.index(name),): [["tt.divisibility", 16]]
        for name, kind in signature.items()
        if kind.startswith("*")
    }
    return fn, ASTSource(fn, signature, constexprs, attrs)


def _ptxas_usage(log: str, name: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) per thread of entry function ``name``
    from ptxas -v output (which may first report helper functions of its own)."""
    start = log.find(f"Compiling entry function '{name}'")
    entry = log[start:] if start >= 0 else ""
    regs = re.search(r"Used (\d+) registers", entry)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", entry)
    if regs is None or spills is None:
        raise RuntimeError(f"unexpected ptxas output for {name}: {log[-400:]}")
    return int(regs.group(1)), int(spills.group(1)), int(spills.group(2))


@contextmanager
def _knob(group: object, name: str, value: object) -> Iterator[None]:
    old = getattr(group, name)
    setattr(group, name, value)
    try:
        yield
    finally:
        setattr(group, name, old)


def compile_launch(launch: Launch, target: str = "sm_90") -> CompiledKernel:
    """Compile ``launch`` for ``target`` (a key of TARGETS) and report its resources."""
    import triton
    from triton.backends.compiler import GPUTarget

    if INTERPRETED:
        raise RuntimeError("ahead-of-time compilation needs TRITON_INTERPRET unset at import")
    capability, limit = TARGETS[target]
    fn, src = _source(launch)
    options = {k: launch.meta[k] for k in _LAUNCH_OPTIONS if k in launch.meta}
    log = io.StringIO()
    # Triton runs ptxas -v itself; its log is printed (and read here) only when asked for, and
    # only when the kernel is really compiled, not found in Triton's cache
    with (
        _knob(triton.knobs.nvidia, "dump_ptxas_log", True),
        _knob(triton.knobs.compilation, "always_compile", True),
        redirect_stdout(log),
    ):
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
    regs, stores, loads = _ptxas_usage(log.getvalue(), fn.fn.__name__)
    return CompiledKernel(
        fn.fn.__name__, target, compiled.metadata.shared, limit, regs, stores, loads,
        options.get("num_warps", 4), is_trap(compiled.asm["ptx"]),
    )  # fmt: skip


def preset_config(
    preset: str, dtype: torch.dtype, *, save: bool = True, length: int = 65_536, batch: int = 1
) -> KernelConfig:
    """The KernelConfig a model of ``preset`` (TitansConfig.preset) hands its memory layers."""
    from titans_dna.models.config import TitansConfig

    model = TitansConfig.preset(preset)
    hidden = model.memory_hidden if model.memory_depth == 2 else model.head_dim
    shape = (batch, length, model.n_heads, model.head_dim)
    return KernelConfig.for_call(
        shape, dtype, hidden, model.memory_depth, model.chunk_size, model.memory_activation,
        model.memory_residual, model.max_surprise_norm, model.memory_update, save,
    )  # fmt: skip
