#!/usr/bin/env bash
# Makes the shipped continuous prior (funknn_fast/weights/prior_ellipses.{safetensors,json}) and,
# with EVALUATE=1, the evaluation protocol of issue 16 (docs/prior_results/, docs/prior.md).
#
# Training: about TRAIN_MINUTES (default 90) on a 2-core CPU. The auto-encoder (then its latent
# flow) and FunkNN are independent, so they train in parallel, one thread each; every stage ends
# at its budget with a fully decayed learning rate (see funknn_fast/prior/train.py). The budgets
# count each process's CPU time (CLOCK=cpu, the default; CLOCK=wall for the wall clock): on an
# idle machine that is the wall clock, and other jobs only make the training take longer instead
# of making it shorter. Evaluation: TV weights tuned on validation phantoms, then every method
# of `funknn solve --method` on the test phantoms (N_IMAGES, noise draws SEEDS), each command
# solving its images in WORKERS processes of one thread (the results do not depend on it).
#
#   bash scripts/train_prior.sh                 # train, then merge into the shipped files
#   EVALUATE=1 bash scripts/train_prior.sh      # ... and run the three solve commands
#   SKIP_TRAIN=1 EVALUATE=1 bash scripts/train_prior.sh   # evaluate the shipped files only
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
WORK=${WORK:-out/prior}
OUT=${OUT:-funknn_fast/weights/prior_ellipses}
RESULTS=${RESULTS:-docs/prior_results}
TRAIN_MINUTES=${TRAIN_MINUTES:-90}
CLOCK=${CLOCK:-cpu}
FLOW_MINUTES=${FLOW_MINUTES:-8}
AE_MINUTES=$((TRAIN_MINUTES - FLOW_MINUTES))
N_IMAGES=${N_IMAGES:-20}          # test phantoms of the final table
N_ABLATION=${N_ABLATION:-20}      # test phantoms of the ablation runs
SEEDS=${SEEDS:-"0 1"}             # noise draws
TUNE_COUNT=${TUNE_COUNT:-4}       # validation phantoms for the TV weights
WORKERS=${WORKERS:-2}
export OMP_NUM_THREADS=1

# The phantom family and the model sizes (all stages must agree on the phantom options).
PHANTOMS=(--size 32 --edge-width 0.06 --train-count 20000 --seed 0)

if [[ -z "${SKIP_TRAIN:-}" ]]; then
  mkdir -p "$WORK"
  # Steps are set high: the budget (--max-minutes, counted on --clock) ends each stage.
  $PY -m funknn_fast.prior.train --out "$WORK/autoencoder_flow" "${PHANTOMS[@]}" \
    --stages autoencoder --channels 32 64 128 --latent 64 \
    --ae-steps 1000000 --ae-batch 32 --ae-lr 1e-3 --pyramid-weight 1.0 \
    --max-minutes "$AE_MINUTES" --clock "$CLOCK" --log "$WORK/autoencoder.jsonl" > "$WORK/autoencoder.out" 2>&1 &
  AE_PID=$!
  $PY -m funknn_fast.prior.train --out "$WORK/funknn" "${PHANTOMS[@]}" \
    --stages funknn --variant mlp --funknn-steps 1000000 --funknn-batch 16 \
    --funknn-queries 256 --funknn-lr 1e-3 \
    --max-minutes "$TRAIN_MINUTES" --clock "$CLOCK" --log "$WORK/funknn.jsonl" > "$WORK/funknn.out" 2>&1 &
  FUNKNN_PID=$!
  wait "$AE_PID"
  $PY -m funknn_fast.prior.train --out "$WORK/autoencoder_flow" "${PHANTOMS[@]}" \
    --stages flow --channels 32 64 128 --latent 64 \
    --flow-steps 4000 --flow-batch 256 --flow-lr 1e-3 --couplings 5 --flow-hidden 256 256 \
    --max-minutes "$FLOW_MINUTES" --clock "$CLOCK" --log "$WORK/flow.jsonl" > "$WORK/flow.out" 2>&1
  wait "$FUNKNN_PID"
  $PY -m funknn_fast.prior.train --out "$OUT" "${PHANTOMS[@]}" --stages "" \
    --merge "$WORK/autoencoder_flow" "$WORK/funknn"
  echo "wrote $OUT.safetensors and $OUT.json"
  mkdir -p "$RESULTS"
  $PY -m funknn_fast.cli sample --weights "$OUT" --n 16 --size 256 --out "$RESULTS/samples.png"
fi

if [[ -n "${EVALUATE:-}" ]]; then
  mkdir -p "$RESULTS"
  # Issue 16 protocol. 1) TV weights of the baselines on validation phantoms only (copy the
  # printed best weights into BASELINE_DEFAULTS of funknn_fast/prior/solvers.py).
  $PY benchmarks/prior_tune.py --count "$TUNE_COUNT" --seeds 0 1 \
    --out "$RESULTS/validation/tv_tuning.json" > "$RESULTS/tune.log" 2>&1
  # 1b) The prior's own solver settings on validation phantoms only, one factor at a time
  # around the issue 7 defaults (copy the winners into PROBLEM_DEFAULTS by hand; about 45
  # CPU-minutes; TUNE_SOLVER=0 skips it).
  if [[ "${TUNE_SOLVER:-1}" != 0 ]]; then
    $PY benchmarks/prior_tune_solver.py --count "$TUNE_COUNT" --weights "$OUT" \
      --out "$RESULTS/validation/solver_tuning.json" > "$RESULTS/tune_solver.log" 2>&1
  fi
  # 2) Test phantoms 0..N_IMAGES-1, noise draws SEEDS: the prior (paper protocol scaled to the
  # CPU: Adam on z, then on a copy of the decoder; the derivative problems start with the warm
  # start on the Poisson reconstruction: the defaults of funknn solve), FBP / Poisson (in every
  # record), TV / TV-Poisson; the ablations on N_ABLATION images, seed 0.
  SOLVE=(--weights "$OUT" --size 64 --out-dir "$RESULTS" --threads 1 --workers "$WORKERS"
         --quiet)
  for seed in $SEEDS; do
    for problem in ct derivatives sparse-derivatives; do
      $PY -m funknn_fast.cli solve "$problem" "${SOLVE[@]}" --n-images "$N_IMAGES" \
        --seed "$seed" > "$RESULTS/$problem-prior-$seed.log" 2>&1
    done
    $PY -m funknn_fast.cli solve ct --method tv "${SOLVE[@]}" --n-images "$N_IMAGES" \
      --seed "$seed" > "$RESULTS/ct-tv-$seed.log" 2>&1
  done
  for problem in derivatives sparse-derivatives; do  # deterministic: one draw
    $PY -m funknn_fast.cli solve "$problem" --method tv-poisson "${SOLVE[@]}" \
      --n-images "$N_IMAGES" > "$RESULTS/$problem-tv-poisson.log" 2>&1
  done
  for method in bicubic warm-start zero-start; do
    for problem in ct derivatives sparse-derivatives; do
      $PY -m funknn_fast.cli solve "$problem" --method "$method" "${SOLVE[@]}" \
        --n-images "$N_ABLATION" > "$RESULTS/$problem-$method.log" 2>&1
    done
  done
  $PY benchmarks/prior_report.py --weights "$OUT" --results "$RESULTS"
fi
