"""Re-derives the prior's own solver defaults on validation phantoms only (issue 16).

The defaults of ``--method prior`` (``SolveConfig`` and ``PROBLEM_DEFAULTS`` of
:mod:`funknn_fast.prior.solvers`) were first tuned on test phantoms. This script runs the prior
(:func:`funknn_fast.prior.solvers.run_method`, as ``funknn solve`` does) over a small grid of
solver settings, one factor at a time around the issue 7 defaults (``TUNED_ON_TEST``; each row
differs from them in one setting; they are the "default" row), on validation phantoms
``0 .. --count - 1`` (``phantom_parameters(..., "validation")``, disjoint from the test
phantoms), noise seed 0 (CT; the derivative observations are noise-free). The score is the SNR
(CT) or the shift-invariant SNR (derivative problems), the metric keys of
``benchmarks/prior_tune.py``; ``snr``, ``si_snr`` and ``detail_snr`` are all stored.

Writes ``--out`` (JSON, atomically, after every image: per problem and setting the overrides,
the full ``SolveConfig``, the per-image scores, the mean, seconds; the best complete setting and
its margin over the default with per-image wins) and prints a markdown table per problem.
Resumable: (setting, image) pairs already in ``--out`` with the same configuration are skipped,
so the grid can be run in pieces (``--settings`` picks rows by label). ``--follow-ups`` adds the
rows of ``FOLLOW_UPS`` (chosen after the one-factor grid; marked in the table). ``--first F``
runs phantoms ``F .. F + count - 1`` instead, stored under their own key
(``ct/validation-4-7``): a check of a chosen setting on phantoms it was not picked on.
``--cap-steps N`` caps every step count at N (smoke tests only; recorded, and never mixed with
uncapped results).
The chosen values go into ``PROBLEM_DEFAULTS`` / ``SolveConfig`` of ``solvers.py`` by hand.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/prior_tune_solver.py [--problems ct derivatives ...]
        [--count 4] [--first 0] [--size 64] [--out FILE] [--settings default "z-lr 0.02" ...]
        [--follow-ups] [--weights STEM] [--threads 1] [--cap-steps N] [--report]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.prior import solvers
from funknn_fast.prior.generator import DEFAULT_PRIOR, load_prior
from funknn_fast.prior.phantoms import phantom_parameters

ROOT = Path(__file__).resolve().parent.parent
METRIC = {"ct": "snr", "derivatives": "si_snr", "sparse-derivatives": "si_snr"}
STEP_FIELDS = ("init_steps", "z_steps", "init_finetune_steps", "finetune_steps")

# The grid's centre: the solver settings of ``--method prior`` as tuned on test phantoms in
# issue 7 (``SolveConfig`` defaults and ``PROBLEM_DEFAULTS`` at commit 4f653b2), pinned here so
# that "default" keeps its meaning when solvers.py changes.
_PAPER = {"init_steps": 0, "init_lr": 0.05, "z_steps": 300, "z_lr": 0.05,
          "init_finetune_steps": 0, "init_finetune_lr": 1e-3, "finetune_steps": 100,
          "finetune_lr": 1e-4}
TUNED_ON_TEST: dict[str, dict] = {
    "ct": dict(_PAPER),
    "derivatives": {**_PAPER, "init_steps": 200, "z_steps": 0, "init_finetune_steps": 1500,
                    "finetune_steps": 50, "finetune_lr": 3e-5},
    "sparse-derivatives": {**_PAPER, "init_steps": 200, "z_steps": 50, "finetune_steps": 200},
}

# One factor at a time around TUNED_ON_TEST: (label, SolveConfig overrides).
GRIDS: dict[str, list[tuple[str, dict]]] = {
    "ct": [
        ("default", {}),
        ("z-lr 0.02", {"z_lr": 0.02}),
        ("z-lr 0.1", {"z_lr": 0.1}),
        ("finetune-steps 0", {"finetune_steps": 0}),
        ("finetune-steps 300", {"finetune_steps": 300}),
        ("finetune-lr 3e-5", {"finetune_lr": 3e-5}),
        ("finetune-lr 3e-4", {"finetune_lr": 3e-4}),
        ("z-steps 600", {"z_steps": 600}),
    ],
    "derivatives": [
        ("default", {}),
        ("init-finetune-steps 0", {"init_finetune_steps": 0}),
        ("init-finetune-steps 500", {"init_finetune_steps": 500}),
        ("init-finetune-steps 3000", {"init_finetune_steps": 3000}),
        ("finetune-steps 0", {"finetune_steps": 0}),
        ("finetune-steps 200", {"finetune_steps": 200}),
        ("finetune-lr 1e-4", {"finetune_lr": 1e-4}),
    ],
    "sparse-derivatives": [
        ("default", {}),
        ("z-steps 150", {"z_steps": 150}),
        ("finetune-steps 0", {"finetune_steps": 0}),
        ("finetune-steps 500", {"finetune_steps": 500}),
        ("finetune-lr 3e-5", {"finetune_lr": 3e-5}),
        ("finetune-lr 3e-4", {"finetune_lr": 3e-4}),
        ("init-finetune-steps 1500", {"init_finetune_steps": 1500}),
    ],
}


# Follow-up rows (not one factor at a time; run only with --follow-ups or when named in
# --settings), chosen after the one-factor grid on phantoms 0-3: CT gained from more decoder
# fine-tuning (more steps and a larger lr both won), so these push further that way; the
# derivative problems gained from a longer decoder warm start and from no data fine-tuning,
# so these combine the two winners.
FOLLOW_UPS: dict[str, list[tuple[str, dict]]] = {
    "ct": [
        ("finetune-steps 300, finetune-lr 3e-4", {"finetune_steps": 300, "finetune_lr": 3e-4}),
        ("finetune-steps 600", {"finetune_steps": 600}),
    ],
    "derivatives": [
        ("init-finetune-steps 3000, finetune-steps 0",
         {"init_finetune_steps": 3000, "finetune_steps": 0}),
    ],
    "sparse-derivatives": [
        ("init-finetune-steps 1500, finetune-steps 0",
         {"init_finetune_steps": 1500, "finetune_steps": 0}),
        # After the grid of the wide auto-encoder (2026-12-03), where the decoder stage turned
        # from harmful to helpful and its larger lr won: push further that way.
        ("finetune-lr 1e-3", {"finetune_lr": 1e-3}),
        ("finetune-steps 500, finetune-lr 3e-4", {"finetune_steps": 500, "finetune_lr": 3e-4}),
    ],
}


def setting_config(problem: str, overrides: dict, size: int,
                   cap: int | None) -> solvers.SolveConfig:
    """The ``prior`` configuration of ``problem`` (``default_config``) with the solver settings
    of :data:`TUNED_ON_TEST`, then ``overrides``; every step count capped at ``cap`` when given
    (smoke tests)."""
    values = {**TUNED_ON_TEST[problem], **overrides}
    if cap is not None:
        values.update({name: min(values[name], cap) for name in STEP_FIELDS})
    return solvers.default_config(problem, "prior", size=size, seed=0, **values)


def summarise(problem: str, record: dict) -> None:
    """Means of the complete rows, the best one, and its margin / wins over the default."""
    metric = METRIC[problem]
    indices = [str(k) for k in record["indices"]]
    count = len(indices)
    default = record["grid"].get("default", {})
    for row in record["grid"].values():
        values = [row["scores"][k][metric] for k in indices if k in row["scores"]]
        row["metric_scores"] = values
        row["complete"] = len(values) == count
        row["mean"] = sum(values) / len(values) if values else None
        row["min"] = min(values) if values else None
        row["max"] = max(values) if values else None
        if row["complete"] and default and all(k in default["scores"] for k in indices):
            deltas = [row["scores"][k][metric] - default["scores"][k][metric] for k in indices]
            row["delta_vs_default"] = sum(deltas) / count
            row["wins_vs_default"] = sum(d > 0 for d in deltas)
    complete = {label: row for label, row in record["grid"].items() if row["complete"]}
    record["complete"] = all(label in complete for label, _ in GRIDS[problem])
    if complete:
        best = max(complete, key=lambda label: complete[label]["mean"])
        record["best"] = best
        record["best_mean"] = complete[best]["mean"]
        record["best_delta_vs_default"] = complete[best].get("delta_vs_default")
        record["best_wins_vs_default"] = complete[best].get("wins_vs_default")


def record_key(problem: str, first: int, count: int) -> str:
    """Key of a problem's results in ``--out``: ``problem`` for phantoms ``0 ..``, else
    ``problem/validation-FIRST-LAST`` (a separate check on other phantoms)."""
    return problem if first == 0 else f"{problem}/validation-{first}-{first + count - 1}"


def tune(problem: str, prior, args: argparse.Namespace, results: dict) -> None:
    """Runs the missing (setting, image) pairs of ``problem``; saves ``results`` after each."""
    phantoms = prior.info["phantoms"]
    indices = list(range(args.first, args.first + args.count))
    record = results.setdefault(record_key(problem, args.first, args.count), {})
    if record.get("cap_steps") != args.cap_steps and record.get("grid"):
        raise SystemExit(f"{args.out} holds {problem} results with cap_steps="
                         f"{record.get('cap_steps')}, not {args.cap_steps}: use another --out")
    record.update({"problem": problem, "method": "prior", "metric": METRIC[problem],
                   "split": "validation", "seed": 0, "size": args.size,
                   "weights": str(args.weights), "phantoms": phantoms, "cap_steps": args.cap_steps,
                   "indices": indices,
                   "default_config": asdict(setting_config(problem, {}, args.size,
                                                           args.cap_steps))})
    grid = record.setdefault("grid", {})
    base = setting_config(problem, {}, args.size, args.cap_steps)
    params = phantom_parameters(indices, "validation", phantoms["seed"])
    observed = solvers.make_problem(problem, params, base, phantoms["edge_width"])
    for label, overrides in GRIDS[problem] + FOLLOW_UPS[problem]:
        if args.settings and label not in args.settings:
            continue
        if not args.settings and not args.follow_ups and (label, overrides) not in GRIDS[problem]:
            continue
        config = setting_config(problem, overrides, args.size, args.cap_steps)
        row = grid.get(label)
        if row is not None and row["config"] != asdict(config):
            raise SystemExit(f"{args.out}: {problem} [{label}] was run with another "
                             "configuration; remove it from the file or use another --out")
        if row is None:
            row = grid[label] = {"overrides": overrides, "config": asdict(config),
                                 "scores": {}, "seconds": {}, "cpu_seconds": {}}
        for k, index in enumerate(indices):
            if str(index) in row["scores"]:
                continue
            single = observed.select(k)
            start, cpu = time.perf_counter(), time.process_time()
            estimate = solvers.run_method("prior", single, prior, config)["estimate"]
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            scores = solvers.metrics(estimate, single.truth, single.params)
            row["scores"][str(index)] = {key: values[0] for key, values in scores.items()}
            row["seconds"][str(index)] = seconds
            row["cpu_seconds"][str(index)] = cpu
            summarise(problem, record)
            write_text_atomically(args.out, json.dumps(results, indent=2) + "\n")
            print(f"{problem} [{label}] validation #{index}: {METRIC[problem]} "
                  f"{scores[METRIC[problem]][0]:.2f} dB ({seconds:.0f} s)", flush=True)
    summarise(problem, record)
    write_text_atomically(args.out, json.dumps(results, indent=2) + "\n")


def table(problem: str, record: dict) -> str:
    """Markdown table of ``record`` (one row per setting); ``problem``: its key in ``--out``."""
    metric = record["metric"]
    indices = [str(k) for k in record["indices"]]
    lines = [f"{problem} (prior, {metric} in dB on validation phantoms "
             f"{indices[0]}-{indices[-1]}, noise seed 0, n = {record['size']}"
             + (f", steps capped at {record['cap_steps']}" if record.get("cap_steps") else "")
             + "):", "",
             "| setting | mean | " + " | ".join(f"#{k}" for k in indices)
             + " | min | max | vs default | wins | s / image |",
             "| --- |" + " ---: |" * (len(indices) + 6)]
    for label, row in record["grid"].items():
        values = [f"{row['scores'][k][metric]:.2f}" if k in row["scores"] else "-"
                  for k in indices]
        mean = f"{row['mean']:.2f}" if row.get("mean") is not None else "-"
        if not row.get("complete"):
            mean += " (partial)"
        best = label == record.get("best")
        if all(label != name for name, _ in GRIDS[problem.split("/")[0]]):
            label = f"{label} (follow-up)"
        if best:
            label, mean = f"**{label}**", f"**{mean}**"
        delta = row.get("delta_vs_default") if label != "default" else None
        wins = row.get("wins_vs_default") if label != "default" else None
        seconds = list(row["seconds"].values())
        if row.get("mean") is None:
            lines.append(f"| {label} | - |" + " - |" * (len(indices) + 5))
            continue
        lines.append(
            f"| {label} | {mean} | " + " | ".join(values)
            + f" | {row['min']:.2f} | {row['max']:.2f} | "
            + (f"{delta:+.2f}" if delta is not None else "-") + " | "
            + (f"{wins}/{len(indices)}" if wins is not None else "-") + " | "
            + (f"{sum(seconds) / len(seconds):.0f}" if seconds else "-") + " |")
    if record.get("best"):
        lines += ["", f"best complete setting: {record['best']} ({record['best_mean']:.2f} dB"
                  + (f", {record['best_delta_vs_default']:+.2f} dB over the default, better on "
                     f"{record['best_wins_vs_default']}/{len(indices)} images"
                     if record.get("best_delta_vs_default") is not None else "") + ")"
                  + ("" if record.get("complete") or "/" in problem
                     else "; grid not complete")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--count", type=int, default=4, help="validation phantoms")
    parser.add_argument("--first", type=int, default=0,
                        help="first validation phantom (> 0: results under a separate key)")
    parser.add_argument("--follow-ups", action="store_true",
                        help="also run the follow-up rows (FOLLOW_UPS)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--settings", nargs="+", help="only these row labels (default: all)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_PRIOR, help="prior file stem")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--cap-steps", type=int, help="cap every step count (smoke tests)")
    parser.add_argument("--report", action="store_true",
                        help="only print the tables of --out (run nothing)")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "prior_results" / "validation"
                        / "solver_tuning.json")
    args = parser.parse_args(argv)
    if args.count < 1 or args.first < 0 or (args.cap_steps is not None and args.cap_steps < 0):
        parser.error("need --count >= 1, --first >= 0 and --cap-steps >= 0")
    known = {label for grid in (*GRIDS.values(), *FOLLOW_UPS.values()) for label, _ in grid}
    if args.settings and not set(args.settings) <= known:
        parser.error(f"unknown settings {sorted(set(args.settings) - known)}")
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if not args.report:
        torch.set_num_threads(args.threads)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        prior = load_prior(args.weights)
        for problem in args.problems:
            tune(problem, prior, args, results)
    for key, record in results.items():
        if key.split("/")[0] in args.problems and record.get("grid"):
            print("\n" + table(key, record))


if __name__ == "__main__":
    main()
