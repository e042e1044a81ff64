"""Grid independence of the continuous prior (issue 16, item 4): tuning and report.

``tune``: the smoothing weight of the scattered-data baseline
(:data:`funknn_fast.prior.scattered.SMOOTH_WEIGHT`) on validation phantoms only: per weight the
shift-invariant SNR of :func:`funknn_fast.prior.scattered.scattered_integrate` of ``--samples``
points integrated on the ``--size`` grid (dense and sparse derivatives), as JSON and a table.

``report``: reads the ``funknn solve`` records of ``--results`` (recursively;
``scripts/prior_grid.sh`` writes them: the shipped prior's derivative problems observed on the
64^2 and 128^2 grids and at scattered points, each run also scored at the other grid by
``--eval-size``) and prints, per problem and observation setting, the mean SI-SNR over the
(image, draw) pairs with the standard deviation over images (of the per-image mean) and the mean
standard deviation over draws: the baseline (Poisson on the grid, the scattered least squares
for scattered points), TV-Poisson where run (``--method tv-poisson``; on scattered points the
same least squares + TV), FunkNN of the area-averaged baseline, the prior on its own grid and
rendered on the 64^2 and 128^2 grids, and the prior's paired difference from the 64^2-grid
setting on each common grid.

Usage:
  python benchmarks/prior_grid.py tune [--count 4] [--samples 4096] [--size 64] [--out FILE]
  python benchmarks/prior_grid.py report [--results docs/prior_results/grid]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_report import _number, paired, summarize  # noqa: E402

RESULTS = ROOT / "docs" / "prior_results" / "grid"
WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SIZES = (64, 128)

Pairs = dict[tuple[int, int], dict[str, float]]


def tune(count: int, samples: int, size: int, seed: int = 0) -> dict:
    """Mean and per-image SI-SNR of the scattered baseline per smoothing weight and problem on
    validation phantoms ``0 .. count - 1`` (points from ``seed``)."""
    from funknn_fast.prior import solvers
    from funknn_fast.prior.generator import DEFAULT_PRIOR, read_info
    from funknn_fast.prior.phantoms import phantom_parameters
    from funknn_fast.prior.scattered import scattered_integrate

    phantoms = read_info(DEFAULT_PRIOR)["phantoms"]
    params = phantom_parameters(list(range(count)), "validation", phantoms["seed"])
    config = solvers.SolveConfig(size=size, sampling="scattered", samples=samples,
                                 sample_seed=seed)
    out = {"count": count, "samples": samples, "size": size, "seed": seed, "problems": {}}
    for problem in ("derivatives", "sparse-derivatives"):
        observed = solvers.make_problem(problem, params, config, phantoms["edge_width"])
        rows = {}
        for weight in WEIGHTS:
            estimate = scattered_integrate(observed.coords, observed.gradients, observed.mask,
                                           size, smooth_weight=weight).float()
            scores = solvers.metrics(estimate, observed.truth)["si_snr"]
            rows[str(weight)] = {"si_snr": scores, "mean": sum(scores) / len(scores)}
        out["problems"][problem] = rows
    return out


def setting(record: dict) -> str:
    """``grid n=64``, ``grid n=128`` or ``scattered M=4096 (n=64)`` of a solve record."""
    size = record["config"]["size"]
    if record.get("sampling") == "scattered":
        return f"scattered M={record['samples']} (n={size})"
    return f"grid n={size}"


def _sources(record: dict) -> dict[str, dict]:
    """Per-image scores of a record by name: ``baseline``, ``funknn_of_baseline``, ``prior``,
    and ``prior@S`` for the prior at each grid size ``S`` (its own and ``--eval-size``)."""
    per_image, size = record["per_image"], record["config"]["size"]
    sources = {"baseline": per_image["baseline"], "funknn_of_baseline":
               per_image["funknn_of_baseline"], "prior": per_image["estimate"],
               f"prior@{size}": per_image["estimate"]}
    if "estimate_at_eval_size" in per_image:
        sources[f"prior@{record['eval_size']}"] = per_image["estimate_at_eval_size"]
    return sources


def collect(records: list[dict]) -> dict[str, dict[str, dict[str, Pairs]]]:
    """``{problem: {setting: {source: {(index, seed): scores}}}}`` of the records of the prior
    (its sources, :func:`_sources`) and of ``tv-poisson`` (source ``tv_poisson``)."""
    table: dict = {}
    for record in records:
        method = record.get("method", "prior")
        if method not in ("prior", "tv-poisson"):
            continue
        group = table.setdefault(record["problem"], {}).setdefault(setting(record), {})
        sources = (_sources(record) if method == "prior"
                   else {"tv_poisson": record["per_image"]["estimate"]})
        for name, scores in sources.items():
            pairs = group.setdefault(name, {})
            for k, index in enumerate(record["indices"]):
                pairs[(index, record["seed"])] = {key: values[k]
                                                  for key, values in scores.items()}
    return table


def _cell(pairs: Pairs | None) -> str:
    """``mean ± sd over images (sd over draws)`` of the SI-SNR, or ``-``."""
    if not pairs:
        return "-"
    summary = summarize(pairs, "si_snr")
    return (f"{_number(summary['mean']['si_snr'])} ± {_number(summary['sd_images'])} "
            f"({_number(summary['sd_draws'])})")


def _difference(pairs: Pairs | None, reference: Pairs | None) -> str:
    """The paired mean difference ``pairs - reference`` (SI-SNR) and its wins, or ``-``."""
    if not pairs or not reference:
        return "-"
    result = paired(pairs, reference, "si_snr")
    if result is None:
        return "-"
    return f"{result['margin']:+.2f} ({result['wins']}/{result['pairs']})"


def problem_table(problem: str, settings: dict[str, dict[str, Pairs]]) -> list[str]:
    """Markdown table of one problem: a row per setting, the grid n = 64 first."""
    names = sorted(settings, key=lambda name: (not name.startswith("grid"),
                                               len(name), name))
    reference = settings.get("grid n=64", {})
    priors = [sources["prior"] for sources in settings.values() if "prior" in sources]
    counts = summarize(priors[0], "si_snr") if priors else {"images": 0, "draws": 0}
    lines = [f"**{problem}** (prior: {counts['images']} images x {counts['draws']} draws; "
             "SI-SNR in dB, mean ± sd over images (sd over draws); differences paired with the "
             "grid n = 64 setting, (wins / pairs))", "",
             "| setting | baseline | TV-Poisson | FunkNN(avg. baseline) | prior (own grid) | "
             "prior at 64 | prior at 128 | - grid 64, at 64 | - grid 64, at 128 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        sources = settings[name]
        cells = [_cell(sources.get(key)) for key in ("baseline", "tv_poisson",
                                                     "funknn_of_baseline", "prior", "prior@64",
                                                     "prior@128")]
        differences = ["-" if name == "grid n=64" else
                       _difference(sources.get(f"prior@{size}"), reference.get(f"prior@{size}"))
                       for size in SIZES]
        lines.append(f"| {name} | " + " | ".join(cells + differences) + " |")
    return lines


def report(results: Path) -> str:
    records = [json.loads(path.read_text()) for path in sorted(results.rglob("*.json"))]
    records = [r for r in records if "per_image" in r and r.get("split", "test") == "test"]
    if not records:
        raise SystemExit(f"no test-split solve records in {results} (bash scripts/prior_grid.sh)")
    lines = []
    for problem, settings in sorted(collect(records).items()):
        lines += problem_table(problem, settings) + [""]
    return "\n".join(lines)


def _tune_table(result: dict) -> str:
    lines = ["| problem | " + " | ".join(f"{w:g}" for w in WEIGHTS) + " |",
             "| --- |" + " --- |" * len(WEIGHTS)]
    for problem, rows in result["problems"].items():
        lines.append(f"| {problem} | " + " | ".join(f"{rows[str(w)]['mean']:.2f}"
                                                    for w in WEIGHTS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tuning = commands.add_parser("tune", help="smoothing weight of the scattered baseline")
    tuning.add_argument("--count", type=int, default=4, help="validation phantoms")
    tuning.add_argument("--samples", type=int, default=4096, help="scattered points")
    tuning.add_argument("--size", type=int, default=64, help="integration grid")
    tuning.add_argument("--out", type=Path, default=RESULTS / "scattered_tuning.json")
    reporting = commands.add_parser("report", help="the grid-independence table")
    reporting.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "tune":
        result = tune(args.count, args.samples, args.size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(_tune_table(result))
        return
    print(report(args.results))


if __name__ == "__main__":
    main()
