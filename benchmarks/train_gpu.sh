#!/usr/bin/env bash
# Longer FunkNN super-resolution training on GPU(s), one run (data-parallel over all visible
# GPUs with torchrun + nccl). Same recipe as the shipped CPU weights (continuous mode, x2..x4,
# L1, Adam, cosine schedule), 10x the steps and 8x the queries per step.
#
#   bash benchmarks/train_gpu.sh [OUT_DIR]        # default OUT_DIR=runs/cnn_gpu
#
# Then: funknn eval --weights OUT_DIR/model --results benchmarks/results/superres_quality_gpu.md
set -euo pipefail
OUT="${1:-runs/cnn_gpu}"
PYTHON="${PYTHON:-.venv/bin/python}"
GPUS="$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')"
RESUME=()  # continue an interrupted run (funknn train --resume refuses a folder without one)
if [ -f "$OUT/checkpoint.json" ]; then RESUME=(--resume); fi
"$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" -m funknn_fast.cli train \
    --out "$OUT" --variant cnn --mode continuous --steps 20000 --batch-size 256 --queries 16 \
    --lr 1e-3 --warmup 500 --crop-size 96 --checkpoint-every 1000 --log-every 100 \
    ${RESUME[@]+"${RESUME[@]}"}
"$PYTHON" -m funknn_fast.cli eval --weights "$OUT/model" --crop 240 \
    --results "$OUT/superres_quality.md" --figure "$OUT/superres_side_by_side.png"
