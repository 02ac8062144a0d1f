#!/usr/bin/env bash
# The GPU check: run it first on any lent CUDA machine (one H200: under 8 minutes), from the
# repository root, then paste the tables it writes into docs/benchmarks.md.
#
#   bash bench/gpu_check.sh [OUT_DIR]     # default: $OUT when set, else gpu_check/
#
# 1. the fused-kernel tests natively (float32 and bfloat16, forward and backward, preset shapes
#    and odd lengths, against chunk.py); a skipped or rejected shape fails the check;
# 2. bench/memory_gpu.py from 4k to 1M tokens (B*T = 2^20, D = 64) against chunk.py,
#    fla's chunk_gated_delta_rule (when fla is importable) and SDPA;
# 3. one training step of the small preset on a 1M-token sequence (time, peak memory).
# Python packages missing on the machine (fla) travel as wheels in .whl/, installed to /tmp/site.
set -uo pipefail
OUT_DIR=${1:-${OUT:-gpu_check}}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
unset TRITON_INTERPRET
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "gpu_check.sh: error: $PY cannot import torch or sees no CUDA device" >&2
    exit 2
fi
failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT_DIR/NAME.log
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - start))s"
    tail -n 25 "$OUT_DIR/$name.log"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
    $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    git rev-parse HEAD 2>/dev/null
} >"$OUT_DIR/machine.txt" 2>&1
cat "$OUT_DIR/machine.txt"
workers=()
$PY -c "import xdist" 2>/dev/null && workers=(-n 8)
step kernel_tests 270 env TITANS_DNA_TRITON_NATIVE=1 $PY -m pytest tests/ops/test_memory_triton.py \
    -q -m "not gpu" -rs -p no:cacheprovider "${workers[@]}" --junitxml="$OUT_DIR/kernel_tests.xml"
if [ -f "$OUT_DIR/kernel_tests.xml" ] && grep -q 'skipped="[1-9]' "$OUT_DIR/kernel_tests.xml"; then
    failed+=("kernel_tests (shapes skipped)")
fi
step memory_gpu 180 $PY bench/memory_gpu.py --dims 64 --no-append --markdown "$OUT_DIR/memory_gpu.md"
step train_step 90 $PY bench/train_step_gpu.py --preset small --tokens 1048576 \
    --markdown "$OUT_DIR/train_step.md"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'gpu_check.sh: failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "gpu_check.sh: all steps passed; tables in $OUT_DIR"
