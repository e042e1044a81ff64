#!/usr/bin/env bash
# Trains the two LIIF baselines (LIIF-EDSR, LIIF-140K) exactly like the shipped FunkNN and
# installs their weights where benchmarks/bench_superres.py looks for them.
#
# "Like FunkNN": `funknn train-liif --match-funknn` reads the JSON written with the FunkNN
# weights and copies its data protocol (mode, data, crop size, batch size, queries per crop,
# scale range, seed) and its budget (train_seconds). The loss is FunkNN's (L1 on the queried
# pixels), and so is the schedule by default (SCHEDULE: Adam 1e-3, 100 warm-up steps, cosine to
# 1e-5 over the budget): with LIIF's own schedule (SCHEDULE="--lr 1e-4 --lr-min 1e-6
# --warmup 50") both LIIFs stayed below bicubic after this budget
# (benchmarks/results/liif_training.md).
# The shipped FunkNN trained on 1 thread (see "command" in its JSON), so each LIIF trains on 1
# thread, and its budget counts the CPU seconds of its process (--clock cpu): on a dedicated core
# that is the wall clock, and it stays fair when other jobs share the machine (the two sizes can
# run at the same time on a 2-core machine: PARALLEL=1).
#
# Usage: benchmarks/train_liif.sh [edsr] [140k]        (both when no argument)
# Environment: PYTHON (default .venv/bin/python), FUNKNN_WEIGHTS (default
#   funknn_fast/weights/funknn_cnn_continuous), OUT (default runs/liif), THREADS (default 1),
#   EXTRA (more train-liif options, e.g. "--max-seconds 600" to override the budget),
#   INSTALL (default funknn_fast/weights), CLOCK (default cpu), PARALLEL (default 0),
#   SCHEDULE (default "--lr 1e-3 --lr-min 1e-5 --warmup 100").
# Result: $INSTALL/liif_<size>.safetensors (+ .json: protocol, steps, seconds);
#   logs in $OUT/<size>/log.jsonl. Then: python benchmarks/run_all.py --only superres
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
FUNKNN_WEIGHTS=${FUNKNN_WEIGHTS:-funknn_fast/weights/funknn_cnn_continuous}
OUT=${OUT:-runs/liif}
THREADS=${THREADS:-1}
CLOCK=${CLOCK:-cpu}
SCHEDULE=${SCHEDULE:---lr 1e-3 --lr-min 1e-5 --warmup 100}
INSTALL=${INSTALL:-funknn_fast/weights}
SIZES=("$@")
if [ ${#SIZES[@]} -eq 0 ]; then
  SIZES=(edsr 140k)
fi
if [ ! -f "${FUNKNN_WEIGHTS}.json" ]; then
  echo "train_liif.sh: ${FUNKNN_WEIGHTS}.json not found: train FunkNN first (its JSON holds" \
       "the protocol and budget to copy), or set FUNKNN_WEIGHTS" >&2
  exit 2
fi
mkdir -p "$INSTALL"
train_one() {
  local size=$1
  # shellcheck disable=SC2086
  "$PYTHON" -m funknn_fast.cli train-liif --size "$size" --out "$OUT/$size" \
    --match-funknn "$FUNKNN_WEIGHTS" --threads "$THREADS" --clock "$CLOCK" $SCHEDULE ${EXTRA:-}
  cp "$OUT/$size/liif_$size.safetensors" "$INSTALL/.liif_$size.safetensors.tmp"
  mv "$INSTALL/.liif_$size.safetensors.tmp" "$INSTALL/liif_$size.safetensors"
  cp "$OUT/$size/liif_$size.json" "$INSTALL/.liif_$size.json.tmp"
  mv "$INSTALL/.liif_$size.json.tmp" "$INSTALL/liif_$size.json"
  echo "train_liif.sh: installed $INSTALL/liif_$size.safetensors" >&2
}
if [ "${PARALLEL:-0}" = 1 ]; then
  pids=()
  for size in "${SIZES[@]}"; do
    train_one "$size" &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
  done
  exit "$status"
fi
for size in "${SIZES[@]}"; do
  train_one "$size"
done
