#!/usr/bin/env bash
# Grid independence of the shipped continuous prior (issue 16, item 4; docs/prior.md).
#
# The same prior and the same solver settings (PROBLEM_DEFAULTS) on the derivative problems
# observed three ways: at the 64^2 and the 128^2 pixel centres, and at SAMPLES points uniform in
# [-1, 1]^2 (scored on the 64^2 grid). Every run is also scored at the other grid size
# (--eval-size), so all settings meet on both grids. Test phantoms FIRST .. FIRST + N_IMAGES - 1,
# draws SEEDS (the data are noise-free: the seed re-draws the solver's query subsets and, for
# scattered points, the points). With TV=1 also --method tv-poisson in every setting for the
# draws TV_SEEDS (default 0: on the grids it is deterministic). One process, one thread,
# sequential.
#
#   bash scripts/prior_grid.sh                      # then: python benchmarks/prior_grid.py report
#   PROBLEMS=derivatives N_IMAGES=2 SEEDS=0 bash scripts/prior_grid.sh   # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RESULTS=${RESULTS:-docs/prior_results/grid}
PROBLEMS=${PROBLEMS:-"derivatives sparse-derivatives"}
N_IMAGES=${N_IMAGES:-6}
FIRST=${FIRST:-0}
SEEDS=${SEEDS:-"0 1"}
SAMPLES=${SAMPLES:-4096}
SETTINGS=${SETTINGS:-"n64 n128 scattered"}
WEIGHTS=${WEIGHTS:-}              # prior file stem (default: the shipped prior)
TV=${TV:-0}
TV_SEEDS=${TV_SEEDS:-"0"}
EXTRA=${EXTRA:-}                  # more solve options (a smoke test: fewer steps)

solve() {
    OMP_NUM_THREADS=1 "$PY" -m funknn_fast.cli solve "$@" --split test --first "$FIRST" \
        --n-images "$N_IMAGES" --threads 1 --workers 1 --quiet ${WEIGHTS:+--weights "$WEIGHTS"} \
        $EXTRA
}

run_setting() {  # problem seed setting [extra solve options]
    local problem=$1 seed=$2 setting=$3
    shift 3
    case $setting in
        n64) solve "$problem" --seed "$seed" --size 64 --eval-size 128 \
                 --out-dir "$RESULTS/n64" "$@" ;;
        n128) solve "$problem" --seed "$seed" --size 128 --eval-size 64 \
                  --out-dir "$RESULTS/n128" "$@" ;;
        scattered) solve "$problem" --seed "$seed" --size 64 --eval-size 128 \
                       --sampling scattered --samples "$SAMPLES" \
                       --out-dir "$RESULTS/scattered" "$@" ;;
        *) echo "unknown setting $setting" >&2; exit 2 ;;
    esac
}

for problem in $PROBLEMS; do
    for seed in $SEEDS; do
        for setting in $SETTINGS; do
            run_setting "$problem" "$seed" "$setting"
        done
    done
    if [ "$TV" = 1 ]; then
        for seed in $TV_SEEDS; do
            for setting in $SETTINGS; do
                run_setting "$problem" "$seed" "$setting" --method tv-poisson
            done
        done
    fi
done
"$PY" benchmarks/prior_grid.py report --results "$RESULTS"
