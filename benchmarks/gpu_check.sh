#!/usr/bin/env bash
# GPU check of patch_sample's GPU backends (issue 3), on one machine with a CUDA GPU (H100):
#   1. builds the extension (C++ CPU + CUDA kernels) into the system Python, editable;
#   2. runs the GPU tests (tests/ops/test_patch_sample_gpu.py: Triton and CUDA against the float64
#      reference) with pytest, when pytest is installed;
#   3. runs benchmarks/bench_patch_sample_gpu.py (its own validation when pytest is missing), which
#      prints the table and writes benchmarks/results/patch_sample_gpu.md;
#   4. the same for patch_sample_jets (issue 5): tests/ops/test_patch_jets_gpu.py, then
#      benchmarks/bench_jets_gpu.py (triton, cuda and the torch reference at 8 x 3 x 128 x 128,
#      2^18 queries, p = 9), which writes benchmarks/results/jets_gpu.md.
# Budget: 8 minutes in all (each step gets at most what is left); no internet needed.
#
# Usage: benchmarks/gpu_check.sh LOG_DIR [--dry-run]
#   LOG_DIR receives gpu_check.log (everything), the results table and a JSON of the numbers.
#   --dry-run: no build, benchmark in its CPU mode (tiny sizes, Triton interpreted), results kept in
#   LOG_DIR only: checks this script's logic on a machine without a GPU.
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S (default 470), MAX_JOBS (default 16).
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 LOG_DIR [--dry-run]" >&2
  exit 2
fi
LOG_DIR=$1
DRY_RUN=0
if [[ "${2:-}" == "--dry-run" ]]; then DRY_RUN=1; fi
mkdir -p "$LOG_DIR"
LOG_DIR=$(cd "$LOG_DIR" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
export MAX_JOBS=${MAX_JOBS:-16}
START_S=$(date +%s)
FAILED=()

exec > >(tee -a "$LOG_DIR/gpu_check.log") 2>&1

remaining() { echo $((BUDGET_S - ($(date +%s) - START_S))); }

# step NAME LIMIT_S COMMAND...: runs COMMAND under timeout(min(LIMIT_S, time left)); records failures.
step() {
  local name=$1 limit=$2
  shift 2
  local left
  left=$(remaining)
  if ((left < 20)); then
    echo "=== $name: skipped, only ${left}s of the budget left"
    FAILED+=("$name (no time left)")
    return 0
  fi
  if ((limit > left)); then limit=$left; fi
  echo "=== $name (limit ${limit}s, $(date -u +%H:%M:%S) UTC)"
  local begin rc=0
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  echo "=== $name: exit $rc after $(($(date +%s) - begin))s"
  if ((rc == 124 || rc == 137)); then
    FAILED+=("$name (timed out)")
  elif ((rc == 5 && DRY_RUN == 1)) && [[ "$name" == *"GPU tests" ]]; then
    echo "(no CUDA device in a dry run: the GPU tests skip, pytest exits 5)"
  elif ((rc != 0)); then
    FAILED+=("$name (exit $rc)")
  fi
  return 0
}

echo "gpu_check.sh: $(date -u) in $ROOT, log dir $LOG_DIR, dry run $DRY_RUN, budget ${BUDGET_S}s"
git log -1 --oneline 2>/dev/null || true
step "environment" 60 bash -c "
  (nvidia-smi || echo 'nvidia-smi unavailable')
  (nvcc --version || echo 'nvcc not on PATH')
  $PYTHON -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())'
  $PYTHON -c 'import triton; print(\"triton\", triton.__version__)' || echo 'triton missing'
  $PYTHON -c 'import pytest; print(\"pytest\", pytest.__version__)' || echo 'pytest missing'"

if ((DRY_RUN == 0)); then
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  # Offline, into the system Python (PEP 668 marker or not), against the installed torch.
  step "build" 270 env PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --no-index \
    --no-build-isolation --no-deps -e .
  if [[ " ${FAILED[*]} " == *" build "* ]]; then
    # Keep the Triton half of the check alive: the pure-Python package needs no compiler.
    step "fallback install without the extension" 60 env FUNKNN_NO_EXTENSION=1 \
      PIP_BREAK_SYSTEM_PACKAGES=1 "$PYTHON" -m pip install --no-index --no-build-isolation \
      --no-deps -e .
  fi
  step "extension has CUDA kernels" 60 "$PYTHON" -c "
import funknn_fast
from funknn_fast.ops._extension import extension_error, has_cuda_kernels
for name, status in funknn_fast.backends().items():
    print(f'{name:7s} {status.available!s:5s} {status.reason}')
assert has_cuda_kernels(), f'no CUDA kernels in the extension ({extension_error()})'"
fi

BENCH_ARGS=(--log-dir "$LOG_DIR" --sweep-forward)
JETS_ARGS=(--log-dir "$LOG_DIR" --sweep-forward)
HAVE_PYTEST=0
if "$PYTHON" -c "import pytest" 2>/dev/null; then HAVE_PYTEST=1; fi
if ((HAVE_PYTEST == 1)); then
  step "GPU tests" 200 env FUNKNN_REQUIRE_GPU_BACKENDS=$((1 - DRY_RUN)) "$PYTHON" -m pytest -p no:cacheprovider \
    tests/ops/test_patch_sample_gpu.py -q -rs --durations=10
  BENCH_ARGS+=(--skip-validation)  # the tests validated the backends
  JETS_ARGS+=(--skip-validation)
else
  echo "pytest is not installed: the benchmarks validate the backends themselves"
fi
if ((DRY_RUN == 1)); then
  BENCH_ARGS+=(--dry-run --output "$LOG_DIR/patch_sample_gpu.md")
  JETS_ARGS+=(--dry-run --output "$LOG_DIR/jets_gpu.md")
fi
step "benchmark" 240 "$PYTHON" benchmarks/bench_patch_sample_gpu.py "${BENCH_ARGS[@]}"
if ((HAVE_PYTEST == 1)); then
  step "jets GPU tests" 150 env FUNKNN_REQUIRE_GPU_BACKENDS=$((1 - DRY_RUN)) "$PYTHON" -m pytest \
    -p no:cacheprovider tests/ops/test_patch_jets_gpu.py -q -rs --durations=10
fi
step "jets benchmark" 120 "$PYTHON" benchmarks/bench_jets_gpu.py "${JETS_ARGS[@]}"

echo
echo "=== results ($(($(date +%s) - START_S))s in all)"
for table in patch_sample_gpu.md jets_gpu.md; do
  if [[ -f "$LOG_DIR/$table" ]]; then cat "$LOG_DIR/$table"; echo; fi
done
if ((${#FAILED[@]} > 0)); then
  echo "gpu_check: FAILED: ${FAILED[*]}"
  exit 1
fi
echo "gpu_check: all steps passed"
