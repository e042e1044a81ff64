#!/usr/bin/env bash
# GPU check of funknn_fast's GPU paths on one machine with a CUDA GPU (H100/H200), from a fresh
# machine with python3, torch and triton only (no pip installs, no network), in 8 minutes.
#
# Headline first (issue 14): the Triton path needs no compiler, so the first minutes give the
# numbers that matter even if the CUDA build is slow or fails:
#   1. environment;
#   2. the op's GPU tests on the Triton backend (tests/ops/test_patch_sample_gpu.py, pytest);
#   3. the op benchmark, Triton and F.grid_sample rows (benchmarks/bench_patch_sample_gpu.py);
# then the rest:
#   4. build of the compiled extension in place (C++ CPU + CUDA kernels; python setup.py);
#   5. the op's GPU tests on the CUDA C++ backend, and its benchmark rows (merged);
#   6. FunkNN and LIIF end to end on the GPU: the inference engines' tests
#      (tests/models/test_gpu_inference.py) and benchmarks/bench_model_gpu.py;
#   7. patch_sample_jets: GPU tests (both backends) and benchmark.
# Every benchmark rewrites its table and JSON in LOG_DIR after each measured method, so a step
# killed by its time limit, a compile error or an exception keeps the numbers already taken.
# The package runs from the source tree (a PYTHONPATH overlay maps funknn_fast.kernels to
# kernels/); nothing is installed. Without pytest, the benchmarks validate the backends
# themselves; a pure-Python pytest can be shipped in build/gpu_check_site
# (benchmarks/gpu_pack_pytest.sh) and is then used.
#
# Usage: benchmarks/gpu_check.sh LOG_DIR [--dry-run]
#   LOG_DIR receives gpu_check.log (everything), the result tables and JSONs of the numbers.
#   --dry-run: no build, benchmarks in their CPU mode (tiny sizes, Triton interpreted), results in
#   LOG_DIR only: checks this script's logic on a machine without a GPU.
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S (default 470), MAX_JOBS (default 16).
set -uo pipefail

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
  if ((left < 15)); then
    echo "=== $name: skipped, only ${left}s of the budget left"
    FAILED+=("$name (no time left)")
    return 0
  fi
  if ((limit > left)); then limit=$left; fi
  echo "=== $name (limit ${limit}s, $(date -u +%H:%M:%S) UTC, $(($(date +%s) - START_S))s in)"
  local begin rc=0
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  echo "=== $name: exit $rc after $(($(date +%s) - begin))s"
  if ((rc == 124 || rc == 137)); then
    FAILED+=("$name (timed out)")
  elif ((rc == 5)) && [[ "$name" == *"tests"* ]]; then
    echo "(pytest collected or ran no test: no CUDA device in a dry run)"
  elif ((rc != 0)); then
    FAILED+=("$name (exit $rc)")
  fi
  return 0
}

# The source tree as an importable package: funknn_fast/* plus kernels/ as funknn_fast.kernels
# (what setup.py's package_dir does), rebuilt after the build to pick up the extension.
OVERLAY=$(mktemp -d "${TMPDIR:-/tmp}/funknn_gpu_check.XXXXXX")
trap 'rm -rf "$OVERLAY"' EXIT
link_package() {
  rm -rf "$OVERLAY/funknn_fast"
  mkdir -p "$OVERLAY/funknn_fast"
  local entry
  for entry in "$ROOT"/funknn_fast/*; do ln -s "$entry" "$OVERLAY/funknn_fast/"; done
  ln -s "$ROOT/kernels" "$OVERLAY/funknn_fast/kernels"
}
link_package
export PYTHONPATH="$OVERLAY${PYTHONPATH:+:$PYTHONPATH}"
# Python puts the working directory first on sys.path (python -c, python -m): run from the
# overlay, never from ROOT, whose funknn_fast/ lacks kernels/. Paths below are absolute.
GIT_HEAD=$(git -C "$ROOT" log -1 --oneline 2>/dev/null || true)
cd "$OVERLAY"
if ! "$PYTHON" -c "import pytest" 2>/dev/null && [[ -d "$ROOT/build/gpu_check_site" ]]; then
  export PYTHONPATH="$PYTHONPATH:$ROOT/build/gpu_check_site"
fi
HAVE_PYTEST=0
if "$PYTHON" -c "import pytest" 2>/dev/null; then HAVE_PYTEST=1; fi
REQUIRE=$((1 - DRY_RUN))

echo "gpu_check.sh: $(date -u) in $ROOT, log dir $LOG_DIR, dry run $DRY_RUN, budget ${BUDGET_S}s"
echo "$GIT_HEAD"
step "environment" 30 bash -c "
  (nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || echo 'nvidia-smi unavailable')
  (nvcc --version | tail -2 || echo 'nvcc not on PATH')
  $PYTHON -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())'
  $PYTHON -c 'import triton; print(\"triton\", triton.__version__)' || echo 'triton missing'
  $PYTHON -c 'import pytest; print(\"pytest\", pytest.__version__)' || echo 'pytest missing'
  $PYTHON -c 'import funknn_fast; print(\"funknn_fast from\", funknn_fast.__file__)'"

# Benchmark options: a dry run writes its tables into LOG_DIR only (never benchmarks/results).
BENCH=(--log-dir "$LOG_DIR")
OP_OUT=() MODEL_OUT=() JETS_OUT=()
if ((DRY_RUN == 1)); then
  BENCH+=(--dry-run)
  OP_OUT=(--output "$LOG_DIR/patch_sample_gpu.md")
  MODEL_OUT=(--output "$LOG_DIR/model_gpu.md")
  JETS_OUT=(--output "$LOG_DIR/jets_gpu.md")
fi

# ---------------------------------------------------------------- headline: Triton, no compiler
VALIDATE=()
PYTEST=(-q -rs --durations=5)
if ((HAVE_PYTEST == 1)); then
  step "Triton GPU tests" 150 env FUNKNN_GPU_TEST_BACKENDS=triton FUNKNN_REQUIRE_GPU_BACKENDS=$REQUIRE \
    "$PYTHON" -m pytest -p no:cacheprovider "$ROOT/tests/ops/test_patch_sample_gpu.py" "${PYTEST[@]}"
  VALIDATE=(--skip-validation)  # the tests validated the backend
else
  echo "pytest is not installed: the benchmarks validate the backends themselves"
fi
step "op benchmark: triton, grid_sample" 100 "$PYTHON" \
  "$ROOT/benchmarks/bench_patch_sample_gpu.py" "${BENCH[@]}" ${VALIDATE[@]+"${VALIDATE[@]}"} ${OP_OUT[@]+"${OP_OUT[@]}"} \
  --methods triton,grid_sample --sweep-forward

# ---------------------------------------------------------------- the rest
if ((DRY_RUN == 0)); then
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  step "build" 180 bash -c "cd '$ROOT' && '$PYTHON' setup.py -q build_ext --inplace"
  link_package
  step "extension has CUDA kernels" 30 "$PYTHON" -c "
import funknn_fast
from funknn_fast.ops._extension import extension_error, has_cuda_kernels
for name, status in funknn_fast.backends().items():
    print(f'{name:7s} {status.available!s:5s} {status.reason}')
assert has_cuda_kernels(), f'no CUDA kernels in the extension ({extension_error()})'"
fi
if ((HAVE_PYTEST == 1)); then
  step "CUDA GPU tests" 60 env FUNKNN_GPU_TEST_BACKENDS=cuda FUNKNN_REQUIRE_GPU_BACKENDS=$REQUIRE \
    "$PYTHON" -m pytest -p no:cacheprovider "$ROOT/tests/ops/test_patch_sample_gpu.py" "${PYTEST[@]}"
fi
step "op benchmark: cuda" 40 "$PYTHON" "$ROOT/benchmarks/bench_patch_sample_gpu.py" "${BENCH[@]}" \
  ${VALIDATE[@]+"${VALIDATE[@]}"} ${OP_OUT[@]+"${OP_OUT[@]}"} --methods cuda --merge
if ((HAVE_PYTEST == 1)); then
  step "model GPU tests" 45 "$PYTHON" -m pytest -p no:cacheprovider \
    "$ROOT/tests/models/test_gpu_inference.py" "${PYTEST[@]}"
fi
step "model benchmark" 90 "$PYTHON" "$ROOT/benchmarks/bench_model_gpu.py" "${BENCH[@]}" \
  ${MODEL_OUT[@]+"${MODEL_OUT[@]}"}
if ((HAVE_PYTEST == 1)); then
  step "jets GPU tests" 60 env FUNKNN_REQUIRE_GPU_BACKENDS=$REQUIRE "$PYTHON" -m pytest \
    -p no:cacheprovider "$ROOT/tests/ops/test_patch_jets_gpu.py" "${PYTEST[@]}"
fi
step "jets benchmark" 60 "$PYTHON" "$ROOT/benchmarks/bench_jets_gpu.py" "${BENCH[@]}" \
  ${VALIDATE[@]+"${VALIDATE[@]}"} ${JETS_OUT[@]+"${JETS_OUT[@]}"}

echo
echo "=== results ($(($(date +%s) - START_S))s in all)"
for table in patch_sample_gpu.md model_gpu.md jets_gpu.md; do
  if [[ -f "$LOG_DIR/$table" ]]; then cat "$LOG_DIR/$table"; echo; fi
done
if ((${#FAILED[@]} > 0)); then
  echo "gpu_check: FAILED: ${FAILED[*]}"
  exit 1
fi
echo "gpu_check: all steps passed"
