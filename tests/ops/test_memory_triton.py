"""Fused Triton neural memory vs the chunked PyTorch form and the token-by-token definition.

The kernels run under Triton's interpreter on the CPU (TRITON_INTERPRET=1 is set here before
triton is imported; `make test` sets it for the whole run). With TITANS_DNA_TRITON_NATIVE=1 on a
CUDA machine the same comparisons run natively on the GPU: the `gpu` test at the end does that in
a subprocess. Every buffer the kernels must write starts as NaN (``POISON_OUTPUTS``), so an
unwritten element fails the comparison.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

NATIVE = os.environ.get("TITANS_DNA_TRITON_NATIVE") == "1"
if not NATIVE:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytest.importorskip("triton", reason="triton has no wheels for this platform (Linux only)")

import titans_dna.ops.memory as memory  # noqa: E402
from titans_dna.models.config import TitansConfig  # noqa: E402
from titans_dna.ops.memory import UPDATES, MemoryState, neural_memory  # noqa: E402
from titans_dna.ops.memory import triton as fused  # noqa: E402

if fused.INTERPRETED == NATIVE:
    pytest.skip(
        "titans_dna.ops.memory.triton was imported before TRITON_INTERPRET was set as this module "
        "needs it; run this file on its own or with TRITON_INTERPRET=1 in the environment",
        allow_module_level=True,
    )
if NATIVE and not torch.cuda.is_available():
    pytest.skip("TITANS_DNA_TRITON_NATIVE=1 needs a CUDA device", allow_module_level=True)

DEVICE = torch.device("cuda" if NATIVE else "cpu")
# float32 inputs: float32 products under the interpreter, TF32 products on the GPU
FP32_TOL = 5e-3 if NATIVE else 2e-5
HALF_TOL = 2e-2


@pytest.fixture(autouse=True)
def _poison_kernel_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "POISON_OUTPUTS", True)


def make_case(
    shape: tuple[int, int, int, int],
    hidden: int = 0,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    extreme: bool = False,
) -> list[torch.Tensor]:
    """Fresh random (q, k, v, θ, η, α, *weights, *momentum); hidden = 0: linear memory.

    q, k are L2-normalised (as the layer feeds them); extreme gates include α = 1, η = 0, θ = 0.
    """
    batch, _, heads, dim = shape
    gen = torch.Generator().manual_seed(seed)

    def rand(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=gen)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen)

    q, k = (F.normalize(randn(*shape), dim=-1) for _ in range(2))
    v = randn(*shape)
    theta, eta, alpha = 0.2 * rand(*shape[:3]), 0.5 + 0.5 * rand(*shape[:3]), 0.2 * rand(*shape[:3])
    if extreme:
        alpha[:, ::5] = 1.0
        eta[:, 1::7] = 0.0
        theta[:, 2::3] = 0.0
    if hidden:
        weights = [randn(batch, heads, hidden, dim) / math.sqrt(dim)]
        weights.append(randn(batch, heads, dim, hidden) / math.sqrt(hidden))
    else:
        weights = [randn(batch, heads, dim, dim) / math.sqrt(dim)]
    momentum = [0.01 * randn(*w.shape) for w in weights]
    tensors = [q.to(dtype), k.to(dtype), v.to(dtype), theta, eta, alpha, *weights, *momentum]
    return [t.to(DEVICE) for t in tensors]


def evaluate(
    impl: str, case: list[torch.Tensor], chunk_size: int, cast: torch.dtype | None = None, **kw
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs (y, end weights, end momentum) and the gradients of every input under fixed
    random cotangents; ``cast`` converts the inputs first (the leaves stay as given)."""
    leaves = [t.detach().clone().requires_grad_() for t in case]
    inputs = [t.to(cast) for t in leaves] if cast is not None else leaves
    depth = (len(case) - 6) // 2
    state = MemoryState(tuple(inputs[6 : 6 + depth]), tuple(inputs[6 + depth :]))
    if impl == "triton":
        # a shape the kernels reject (on a GPU: its compiled kernels do not fit) is a failure
        reason = fused.plan_call(*inputs[:6], state, chunk_size=chunk_size, **kw).reason
        assert reason is None, reason
    y, end = neural_memory(*inputs[:6], state, chunk_size=chunk_size, impl=impl, **kw)
    outputs = [y, *end.weights, *end.momentum]
    gen = torch.Generator().manual_seed(1234)
    loss = sum(
        (o.double() * torch.randn(o.shape, generator=gen).to(o.device, torch.float64)).sum()
        for o in outputs
    )
    grads = torch.autograd.grad(loss, leaves)
    return [o.detach() for o in outputs], list(grads)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return ((got - want).norm() / want.norm().clamp(min=1e-30)).item()


def assert_close(
    got: list[torch.Tensor], want: list[torch.Tensor], tol: float, names: list[str]
) -> None:
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape, f"{name}: shape {list(a.shape)} != {list(b.shape)}"
        assert torch.isfinite(a).all(), f"{name}: non-finite values (unwritten or overflow)"
        err = rel_err(a, b)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


def compare_to_chunk(case: list[torch.Tensor], chunk_size: int, tol: float, **kw) -> None:
    depth = (len(case) - 6) // 2
    out_names = ["y", *(f"W{i}_end" for i in range(depth)), *(f"S{i}_end" for i in range(depth))]
    grad_names = ["dq", "dk", "dv", "dtheta", "deta", "dalpha"]
    grad_names += [f"dW{i}" for i in range(depth)] + [f"dS{i}" for i in range(depth)]
    got_out, got_grad = evaluate("triton", case, chunk_size, **kw)
    want_out, want_grad = evaluate("chunk", case, chunk_size, cast=torch.float32, **kw)
    assert_close(got_out, want_out, tol, out_names)
    assert_close(got_grad, want_grad, tol, grad_names)


LINEAR_CASES = [
    # (B, T, H, D), chunk size, max_surprise_norm
    ((1, 1, 1, 16), 16, None),
    ((2, 17, 2, 16), 16, None),
    ((1, 64, 2, 16), 32, None),
    ((1, 65, 1, 16), 64, None),
    ((1, 200, 1, 16), 16, None),
    ((1, 200, 1, 16), 64, 0.5),
    ((1, 40, 2, 24), 32, 0.5),
    ((1, 33, 1, 64), 16, None),
    ((1, 17, 1, 128), 16, None),
]


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize(("shape", "chunk_size", "clip"), LINEAR_CASES)
def test_linear_matches_chunk(
    shape: tuple[int, int, int, int], chunk_size: int, clip: float | None, update: str
) -> None:
    case = make_case(shape, seed=sum(shape) + chunk_size)
    compare_to_chunk(case, chunk_size, FP32_TOL, max_surprise_norm=clip, update=update)


MLP_CASES = [
    # (B, T, H, D), hidden, chunk size, activation, residual, max_surprise_norm
    ((1, 1, 1, 16), 32, 16, "silu", False, None),
    ((1, 37, 2, 16), 32, 16, "silu", False, None),
    ((1, 65, 1, 32), 64, 32, "gelu", True, 0.3),
    ((1, 20, 1, 24), 40, 16, "relu", False, None),
    ((1, 200, 1, 16), 32, 64, "silu", True, None),
    ((1, 17, 1, 64), 128, 16, "silu", False, 1.0),
]


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize(
    ("shape", "hidden", "chunk_size", "activation", "residual", "clip"), MLP_CASES
)
def test_mlp_matches_chunk(
    shape: tuple[int, int, int, int],
    hidden: int,
    chunk_size: int,
    activation: str,
    residual: bool,
    clip: float | None,
    update: str,
) -> None:
    case = make_case(shape, hidden, seed=sum(shape) + hidden)
    compare_to_chunk(
        case,
        chunk_size,
        FP32_TOL,
        activation=activation,
        residual=residual,
        max_surprise_norm=clip,
        update=update,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_preset_memories_match_chunk(preset: str, dtype: torch.dtype) -> None:
    """Each shipped preset's memory as its model calls it. Natively at the preset's head count and
    a length with a partial last chunk; under the interpreter (slow) one head and two chunks."""
    model = TitansConfig.preset(preset)
    shape = (1, 1000, model.n_heads, model.head_dim) if NATIVE else (1, 100, 1, model.head_dim)
    case = make_case(shape, model.memory_hidden, dtype=dtype, seed=model.memory_hidden)
    tol = FP32_TOL if dtype == torch.float32 else HALF_TOL
    compare_to_chunk(
        case, model.chunk_size, tol, max_surprise_norm=model.max_surprise_norm,
        activation=model.memory_activation, update=model.memory_update,
    )  # fmt: skip


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("hidden", [0, 32])
def test_extreme_gates_match_chunk(hidden: int, update: str) -> None:
    """α = 1, η = 0 and θ = 0 tokens: the clamped log-gates stay finite and agree."""
    case = make_case((1, 50, 2, 16), hidden, seed=7, extreme=True)
    compare_to_chunk(case, 16, FP32_TOL, update=update)


@pytest.mark.parametrize(
    ("shape", "hidden", "dtype", "chunk_size"),
    [
        ((2, 65, 2, 32), 0, torch.bfloat16, 32),
        ((1, 40, 2, 16), 32, torch.bfloat16, 16),
        ((1, 30, 1, 16), 0, torch.float16, 16),
    ],
)
def test_half_inputs_match_chunk(
    shape: tuple[int, int, int, int], hidden: int, dtype: torch.dtype, chunk_size: int
) -> None:
    """16-bit q/k/v go to the kernels as they are; chunk.py sees the same values upcast."""
    case = make_case(shape, hidden, dtype=dtype, seed=3)
    got_out, _ = evaluate("triton", case, chunk_size)
    assert got_out[0].dtype == dtype
    compare_to_chunk(case, chunk_size, HALF_TOL)


@pytest.mark.parametrize(
    ("hidden", "residual", "clip", "update"),
    [
        (0, False, 0.4, "normalized"),
        (32, True, None, "normalized"),
        (32, False, 0.4, "normalized"),
        (32, False, 0.4, "paper"),
    ],
)
def test_matches_naive_definition(
    hidden: int, residual: bool, clip: float | None, update: str
) -> None:
    """The kernels (float32) against the token-by-token chunked semantics in float64."""
    case = make_case((1, 37, 2, 16), hidden, seed=11)
    kw = {"residual": residual, "max_surprise_norm": clip, "update": update}
    got_out, got_grad = evaluate("triton", case, 16, **kw)
    want_out, want_grad = evaluate("naive", case, 16, cast=torch.float64, **kw)
    names = [f"out{i}" for i in range(len(got_out))]
    assert_close(got_out, want_out, FP32_TOL, names)
    assert_close(got_grad, want_grad, FP32_TOL, [f"grad{i}" for i in range(len(got_grad))])


@pytest.mark.parametrize("hidden", [0, 32])
def test_streaming_in_pieces_equals_one_pass(hidden: int) -> None:
    case = make_case((1, 64, 2, 16), hidden, seed=5)
    depth = (len(case) - 6) // 2
    state = MemoryState(tuple(case[6 : 6 + depth]), tuple(case[6 + depth :]))
    with torch.no_grad():
        y_full, end_full = neural_memory(*case[:6], state, chunk_size=16, impl="triton")
        pieces = []
        for part in (slice(0, 32), slice(32, 64)):
            y, state = neural_memory(
                *(t[:, part] for t in case[:6]), state, chunk_size=16, impl="triton"
            )
            pieces.append(y)
    assert_close([torch.cat(pieces, 1)], [y_full], FP32_TOL, ["y"])
    ends = [*state.weights, *state.momentum]
    assert_close(ends, [*end_full.weights, *end_full.momentum], FP32_TOL, ["end"] * len(ends))


def test_no_grad_forward_matches_chunk() -> None:
    """Without autograd the kernels skip the chunk-start states; outputs are unchanged."""
    case = make_case((1, 40, 1, 32), 64, seed=9)
    state = MemoryState((case[6], case[7]), (case[8], case[9]))
    with torch.no_grad():
        y, end = neural_memory(*case[:6], state, chunk_size=16, impl="triton")
        y_ref, end_ref = neural_memory(*case[:6], state, chunk_size=16, impl="chunk")
    assert_close([y, *end.weights], [y_ref, *end_ref.weights], FP32_TOL, ["y", "W1", "W2"])


def test_gradients_reach_learned_initial_weights() -> None:
    """A state built by MemoryState.initial (expanded over the batch) gets summed gradients."""
    case = make_case((2, 24, 2, 16), seed=13)
    grads = {}
    for impl in ("triton", "chunk"):
        init = (case[6][0].detach().clone().requires_grad_(),)
        y, end = neural_memory(*case[:6], MemoryState.initial(init, 2), chunk_size=16, impl=impl)
        (y.square().sum() + end.weights[0].sum()).backward()
        grads[impl] = init[0].grad
    assert_close([grads["triton"]], [grads["chunk"]], FP32_TOL, ["dW_init"])


def test_auto_on_cpu_uses_chunk() -> None:
    assert memory.resolve_impl("auto", torch.device("cpu")) == "chunk"
    assert memory.resolve_impl("auto", torch.device("cuda")) == "triton"
    case = make_case((1, 20, 1, 16), seed=2)
    state = MemoryState((case[6],), (case[7],))
    y_auto, _ = neural_memory(*[t.cpu() for t in case[:6]], state.to("cpu"), impl="auto")
    y_chunk, _ = neural_memory(*[t.cpu() for t in case[:6]], state.to("cpu"), impl="chunk")
    assert torch.equal(y_auto, y_chunk)


def test_triton_on_cpu_without_interpreter_raises() -> None:
    script = (
        "import torch\n"
        "from titans_dna.ops.memory import MemoryState, neural_memory\n"
        "x = torch.randn(1, 4, 1, 16)\n"
        "g = torch.rand(1, 4, 1)\n"
        "s = MemoryState((torch.zeros(1, 1, 16, 16),), (torch.zeros(1, 1, 16, 16),))\n"
        "try:\n"
        "    neural_memory(x, x, x, g, g, g, s, chunk_size=16, impl='triton')\n"
        "except ValueError as err:\n"
        "    print('ValueError:', err)\n"
    )
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ValueError:" in done.stdout and "TRITON_INTERPRET=1" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("hidden", "depth", "dim", "chunk_size", "dtype", "message"),
    [
        (0, 1, 16, 8, torch.float32, "chunk_size"),
        (0, 1, 160, 16, torch.float32, "head dim"),
        (512, 2, 64, 16, torch.float32, "hidden"),
        (32, 3, 16, 16, torch.float32, "depth"),
        (0, 1, 16, 16, torch.float64, "float32"),
    ],
)
def test_unsupported_calls(
    monkeypatch: pytest.MonkeyPatch,
    hidden: int,
    depth: int,
    dim: int,
    chunk_size: int,
    dtype: torch.dtype,
    message: str,
) -> None:
    """impl="triton" raises a clear error; impl="auto" (as on CUDA) falls back to chunk.py."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 20, 1, dim, generator=gen).to(DEVICE, dtype)
    gates = torch.rand(1, 20, 1, generator=gen).to(DEVICE, dtype)
    widths = [dim] + [hidden] * (depth - 1) + [dim]
    weights = tuple(
        0.1 * torch.randn(1, 1, o, i, generator=gen).to(DEVICE, dtype)
        for i, o in itertools.pairwise(widths)
    )
    state = MemoryState(weights, tuple(torch.zeros_like(w) for w in weights))
    args = (x, x, x, gates, gates, gates, state)
    with pytest.raises(ValueError, match=message):
        neural_memory(*args, chunk_size=chunk_size, impl="triton")
    monkeypatch.setattr(memory, "resolve_impl", lambda impl, device: "triton")
    monkeypatch.setattr(memory, "_FALLBACKS_WARNED", set())
    with pytest.warns(memory.MemoryKernelFallback, match=message):
        y_auto, _ = neural_memory(*args, chunk_size=chunk_size, impl="auto")
    y_chunk, _ = neural_memory(*args, chunk_size=chunk_size, impl="chunk")
    assert torch.equal(y_auto, y_chunk)


def test_auto_fallback_warns_once_naming_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "resolve_impl", lambda impl, device: "triton")
    monkeypatch.setattr(memory, "_FALLBACKS_WARNED", set())
    case = make_case((1, 20, 1, 16), seed=6)
    state = MemoryState((case[6],), (case[7],))
    with pytest.warns(memory.MemoryKernelFallback, match="chunk_size in") as caught:
        for _ in range(3):
            y_auto, _ = neural_memory(*case[:6], state, chunk_size=8, impl="auto")
    assert len(caught) == 1, [str(w.message) for w in caught]
    y_chunk, _ = neural_memory(*case[:6], state, chunk_size=8, impl="chunk")
    assert torch.equal(y_auto, y_chunk)


def test_memory_impl_triton_in_the_config_makes_fallback_an_error() -> None:
    """TitansConfig.memory_impl reaches every memory layer: "triton" refuses to fall back."""
    from titans_dna.models.lm import TitansLM

    tokens = torch.randint(1, 5, (1, 24), device=DEVICE)
    auto = TitansConfig.preset("tiny", variant="lmm", chunk_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", memory.MemoryKernelFallback)
        TitansLM(auto).to(DEVICE)(tokens)  # auto: chunk.py
    strict = TitansConfig.preset("tiny", variant="lmm", chunk_size=8, memory_impl="triton")
    with pytest.raises(ValueError, match="chunk_size in"):
        TitansLM(strict).to(DEVICE)(tokens)


@pytest.mark.parametrize(
    ("compiled", "message"),
    [(RuntimeError("ptxas failed\ndetails"), "failed to compile .RuntimeError: ptxas failed"),
     (300_000, "needs 300000 bytes of shared memory per block")],
)  # fmt: skip
def test_resource_check_turns_compile_failures_into_reasons(
    monkeypatch: pytest.MonkeyPatch, compiled: object, message: str
) -> None:
    """A kernel that does not compile, or does not fit, is a reason to fall back, not a crash."""
    from titans_dna.ops.memory import triton_launch

    def fake_compile(launch, device):
        if isinstance(compiled, Exception):
            raise compiled
        return SimpleNamespace(metadata=SimpleNamespace(shared=compiled), asm={"ptx": ptx})

    ptx = "ld.global.v4.b32 ..."
    monkeypatch.setattr(triton_launch, "shared_limit", lambda device: 232_448)
    monkeypatch.setattr(triton_launch, "compile_for", fake_compile)
    cfg = triton_launch.KernelConfig.for_call(
        (1, 100, 4, 64), torch.bfloat16, 128, 2, 64, "silu", False, 1.0, "normalized", True
    )
    reason = triton_launch.resource_reason(cfg, torch.device("cuda", 0), torch.bfloat16)
    assert reason is not None and re.search(message, reason), reason
    if isinstance(compiled, int):
        compiled = 100_000
        assert triton_launch.resource_reason(cfg, torch.device("cuda", 0), torch.bfloat16) is None
        ptx = "{\n\ttrap;\n}"  # what Triton emits for a kernel it cannot lower
        reason = triton_launch.resource_reason(cfg, torch.device("cuda", 0), torch.bfloat16)
        assert reason is not None and "compiled mlp_fwd_kernel to a trap" in reason, reason


def test_auto_picks_kernels_when_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Supported calls run the kernels with the configuration their one check built."""
    planned, configs = [], []

    def spy(cfg, *args):
        planned.append(cfg)
        return run_planned(cfg, *args)

    def counted(*args, **kwargs):
        configs.append(config(*args, **kwargs))
        return configs[-1]

    run_planned, config = fused.run_planned, fused._config
    monkeypatch.setattr(fused, "run_planned", spy)
    monkeypatch.setattr(fused, "_config", counted)
    monkeypatch.setattr(memory, "resolve_impl", lambda impl, device: "triton")
    case = make_case((1, 20, 1, 16), seed=4)
    neural_memory(*case[:6], MemoryState((case[6],), (case[7],)), chunk_size=16, impl="auto")
    assert len(configs) == 1 and planned == configs and configs[0].chunk == 16


@pytest.mark.gpu
@pytest.mark.skipif(NATIVE, reason="already running natively")
def test_native_cuda_run() -> None:
    """Every comparison above, compiled for the GPU (no interpreter), in a fresh process."""
    env = {key: val for key, val in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TITANS_DNA_TRITON_NATIVE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-m", "not gpu", "-x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
