"""Writes benchmarks/results/prior.md: the continuous prior's training and its inverse problems.

Reads the prior file's training record (``<weights>.json``) and the metrics JSON files that
``funknn solve`` wrote (``<results>/{ct,derivatives,sparse-derivatives}.json``, made by
``SKIP_TRAIN=1 EVALUATE=1 bash scripts/train_prior.sh``), and checks them against the
acceptance bars of issue 7: CT mean SNR at least FBP's + 5 dB; derivative inversion mean
shift-invariant SNR at least 20 dB (sparse derivatives: 15 dB) and above Poisson integration's.

Usage: python benchmarks/prior_report.py [--weights STEM] [--results DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINE = "2-core AMD EPYC (Zen 2) CPU"
PROBLEMS = {
    # problem: (title, metric, minimum of the prior, margin over the baseline)
    "ct": ("limited-view CT (60 angles in [-70, 70] deg, 30 dB)", "snr", None, 5.0),
    "derivatives": ("derivatives (dense gradients)", "si_snr", 20.0, 0.0),
    "sparse-derivatives": ("sparse derivatives (20% largest + TV)", "si_snr", 15.0, 0.0),
}
METRIC_NAMES = {"snr": "SNR", "si_snr": "shift-invariant SNR"}


def acceptance(problem: str, record: dict) -> tuple[str, bool]:
    """The acceptance bar of ``problem`` in words and whether ``record``'s means clear it."""
    _, metric, minimum, margin = PROBLEMS[problem]
    prior = record["mean"]["prior"][metric]
    base = record["mean"]["baseline"][metric]
    bar = base + margin
    words = f"{METRIC_NAMES[metric]} > {record['baseline_method']} {base:.2f}"
    if margin:
        words = f"{METRIC_NAMES[metric]} >= {record['baseline_method']} + {margin:g} = {bar:.2f}"
    passed = prior >= bar if margin else prior > bar
    if minimum is not None:
        words += f" and >= {minimum:g}"
        passed = passed and prior >= minimum
    return words, passed


def _wins(record: dict, metric: str) -> int:
    prior = record["per_image"]["prior"][metric]
    base = record["per_image"]["baseline"][metric]
    return sum(p > b for p, b in zip(prior, base, strict=True))


def results_table(records: dict[str, dict]) -> list[str]:
    lines = [
        "| problem | images | prior SNR / SI-SNR (dB) | baseline SNR / SI-SNR (dB) | "
        "AE projection SNR (dB) | FunkNN(avg. baseline) SNR / SI-SNR (dB) | "
        "prior beats baseline | acceptance | s / image |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for problem, record in records.items():
        title, metric, _, _ = PROBLEMS[problem]
        mean = record["mean"]
        words, passed = acceptance(problem, record)
        seconds = record["seconds_per_image"]
        count = len(record["indices"])
        through = mean.get("funknn_of_baseline")
        through = f"{through['snr']:.2f} / {through['si_snr']:.2f}" if through else "-"
        lines.append(
            f"| {title} | {count} | {mean['prior']['snr']:.2f} / {mean['prior']['si_snr']:.2f} "
            f"| {record['baseline_method']} {mean['baseline']['snr']:.2f} / "
            f"{mean['baseline']['si_snr']:.2f} | {mean['autoencoder_projection']['snr']:.2f} | "
            f"{through} | "
            f"{_wins(record, metric)} / {count} ({METRIC_NAMES[metric]}) | "
            f"{'PASS' if passed else 'FAIL'}: {words} | {sum(seconds) / len(seconds):.0f} |"
        )
    return lines


def training_table(info: dict) -> list[str]:
    lines = ["| stage | steps | wall (s) | CPU (s) | final loss |",
             "| --- | --- | --- | --- | --- |"]
    for stage, entry in info.get("training", {}).items():
        summary = entry["summary"]
        lines.append(f"| {stage} | {summary['steps_done']} | {summary['seconds']:.0f} | "
                     f"{summary.get('cpu_seconds', float('nan')):.0f} | "
                     f"{summary['final_loss']:.4g} |")
    return lines


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def report(weights: Path, results: Path) -> str:
    info = json.loads(weights.with_suffix(".json").read_text())
    records = {}
    for problem in PROBLEMS:
        path = results / f"{problem}.json"
        if path.exists():
            records[problem] = json.loads(path.read_text())
    if not records:
        raise SystemExit(f"no solve results in {results} (run SKIP_TRAIN=1 EVALUATE=1 bash "
                         "scripts/train_prior.sh)")
    first = next(iter(records.values()))
    size = first["config"]["size"]
    phantoms = info["phantoms"]
    lines = [
        "## Continuous prior and inverse problems (issue 7)",
        "",
        f"Prior `{_shown(weights)}` "
        f"(generator {phantoms['size']}^2, {phantoms['train_count']} training phantoms, edge "
        f"width {phantoms['edge_width']}); problems at n = {size} on held-out test phantoms "
        f"(indices {first['indices'][0]}-{first['indices'][-1]}). Commands: "
        "`bash scripts/train_prior.sh` (training), `SKIP_TRAIN=1 EVALUATE=1 bash "
        "scripts/train_prior.sh` (the solve runs below), `python benchmarks/prior_report.py` "
        "(this section). Machine: "
        f"{MACHINE}, Python {platform.python_version()}, one thread per process.",
        "",
        "Training (stages end at their CPU-time budget):",
        "",
        *training_table(info),
        "",
        "Inverse problems (means over the images; SI-SNR = shift-invariant SNR; AE projection:",
        "FunkNN(decoder(encoder(truth))), the prior knowing the truth; FunkNN(avg. baseline):",
        "FunkNN of the baseline area-averaged to the generator resolution, the warm start's",
        "target):",
        "",
        *results_table(records),
        "",
        "Commands of the solve runs (from the JSON files):",
        "",
    ]
    for problem, record in records.items():
        workers = record.get("workers", 1)
        lines.append(f"* `{record['command']}` ({workers} worker(s) x {record['threads']} "
                     f"thread); figure `{_shown(results)}/{problem}.png`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path,
                        default=ROOT / "funknn_fast" / "weights" / "prior_ellipses")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "prior_results")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prior.md")
    args = parser.parse_args(argv)
    text = report(args.weights.resolve(), args.results.resolve())
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()
