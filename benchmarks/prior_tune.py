"""Tunes the TV weight of the iterative baselines on validation phantoms only (issue 16).

For each problem, runs ``tv`` (CT) or ``tv-poisson`` (derivative problems) of
:func:`funknn_fast.prior.solvers.run_method` over a grid of weights on validation phantoms
``0 .. --count - 1`` (``phantom_parameters(..., "validation")``, disjoint from the test phantoms)
and noise seeds ``--seeds`` (CT; the derivative observations are noise-free and the baseline
deterministic, so one seed), and picks the weight with the best mean SNR (CT) or
shift-invariant SNR (derivatives). The best weight is also run with twice the primal-dual
iterations (:func:`funknn_fast.prior.baselines.pdhg_tv`) to show the optimisation has converged.
Writes ``--out`` (JSON: per weight the per-image scores and the mean, the best weight, the
convergence check) and prints a markdown table; the weights go into ``BASELINE_DEFAULTS`` of
:mod:`funknn_fast.prior.solvers` by hand.

Usage: python benchmarks/prior_tune.py [--count 10] [--seeds 0 1] [--out FILE] [--problems ...]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from funknn_fast.prior import solvers
from funknn_fast.prior.generator import DEFAULT_PRIOR, read_info
from funknn_fast.prior.phantoms import phantom_parameters

ROOT = Path(__file__).resolve().parent.parent
GRIDS = {
    "ct": (3e-3, 1e-2, 2e-2, 5e-2, 1e-1),
    "derivatives": (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0),
    "sparse-derivatives": (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0),
}
METHOD = {"ct": "tv", "derivatives": "tv-poisson", "sparse-derivatives": "tv-poisson"}
METRIC = {"ct": "snr", "derivatives": "si_snr", "sparse-derivatives": "si_snr"}


def scores(problem: str, config: solvers.SolveConfig, count: int, seeds: list[int],
           edge_width: float, phantom_seed: int) -> list[float]:
    """Per (phantom, seed) score of the TV baseline of ``problem`` with ``config``."""
    params = phantom_parameters(list(range(count)), "validation", phantom_seed)
    values = []
    for seed in seeds:
        observed = solvers.make_problem(problem, params, replace(config, seed=seed), edge_width)
        for k in range(count):
            single = observed.select(k)
            estimate = solvers.run_method(METHOD[problem], single, None, config)["estimate"]
            values.append(solvers.metrics(estimate, single.truth)[METRIC[problem]][0])
    return values


def tune(problem: str, count: int, seeds: list[int], size: int, info: dict) -> dict:
    phantoms = info["phantoms"]
    seeds = seeds if problem == "ct" else seeds[:1]
    rows = {}
    for weight in GRIDS[problem]:
        config = solvers.default_config(problem, METHOD[problem], size=size,
                                        baseline_tv_weight=weight)
        start = time.perf_counter()
        values = scores(problem, config, count, seeds, phantoms["edge_width"], phantoms["seed"])
        rows[f"{weight:g}"] = {"weight": weight, "scores": values,
                               "mean": sum(values) / len(values),
                               "seconds": time.perf_counter() - start}
        mean = rows[f"{weight:g}"]["mean"]
        print(f"{problem} weight {weight:g}: mean {METRIC[problem]} {mean:.2f}", flush=True)
    best = max(rows.values(), key=lambda row: row["mean"])
    config = solvers.default_config(problem, METHOD[problem], size=size,
                                    baseline_tv_weight=best["weight"])
    steps = solvers.baseline_steps(problem, config)
    longer = scores(problem, replace(config, baseline_steps=2 * steps), count,
                    seeds, phantoms["edge_width"], phantoms["seed"])
    return {"method": METHOD[problem], "metric": METRIC[problem], "split": "validation",
            "indices": list(range(count)), "seeds": seeds, "size": size,
            "iterations": steps, "grid": rows,
            "best_weight": best["weight"], "best_mean": best["mean"],
            "twice_the_steps_mean": sum(longer) / len(longer)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="validation phantoms")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--problems", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--weights", type=Path, default=DEFAULT_PRIOR,
                        help="prior file stem (only its phantom family is read)")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "prior_results" / "validation" / "tv_tuning.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = read_info(args.weights)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    ran = {problem: tune(problem, args.count, args.seeds, args.size, info)
           for problem in args.problems}
    results.update(ran)  # problems not run keep their earlier results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.out)
    for problem, result in ran.items():
        print(f"\n{problem} ({result['method']}, mean {result['metric']} on validation "
              f"phantoms 0-{args.count - 1}, seeds {result['seeds']}):\n")
        print("| weight | " + " | ".join(result["grid"]) + " |")
        print("| --- |" + " --- |" * len(result["grid"]))
        means = " | ".join(f"{row['mean']:.2f}" for row in result["grid"].values())
        print(f"| mean (dB) | {means} |")
        print(f"\nbest {result['best_weight']:g}: {result['best_mean']:.2f} dB; with twice the "
              f"iterations {result['twice_the_steps_mean']:.2f} dB")


if __name__ == "__main__":
    main()
