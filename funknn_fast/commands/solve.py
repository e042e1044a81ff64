"""``funknn solve {ct,derivatives,sparse-derivatives}``: inverse problems with the continuous prior.

Runs :func:`funknn_fast.prior.solvers.solve` on held-out phantoms (test split, indices
``--first .. --first + --n-images - 1``) and the baseline (FBP for ``ct``, Poisson integration
for the derivative problems). Writes ``<out-dir>/<problem>.json`` (per-image and mean SNR and
shift-invariant SNR of the prior, the baseline and the auto-encoder projection of the truth, the
configuration, the command and timings) and ``<out-dir>/<problem>.png`` (truth, baseline, prior
for the first images). Progress: one bar per image (``--quiet`` turns it off).

Defaults of the solver options depend on the problem (``PROBLEM_DEFAULTS`` in
:mod:`funknn_fast.prior.solvers`): the derivative problems warm-start ``z`` (and, for dense
gradients, the decoder copy) on the Poisson reconstruction before the gradient loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from funknn_fast.cli import CommandError

PROBLEMS = ("ct", "derivatives", "sparse-derivatives")
FIGURE_ROWS = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "solve", help="inverse problems (limited-view CT, derivative inversion) with the prior",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("problem", choices=PROBLEMS)
    parser.add_argument("--weights", help="prior file stem (default: the shipped prior)")
    parser.add_argument("--n-images", type=int, default=4, help="number of test phantoms")
    parser.add_argument("--first", type=int, default=0, help="first test phantom index")
    parser.add_argument("--out-dir", default="solve_results", help="folder for PNG + JSON")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--size", type=int, help="observation / rendering grid n (default 64)")
    helps = {
        "init-steps": "warm start: Adam steps fitting G(z) to the baseline (up to a constant)",
        "init-lr": "learning rate of the warm start of z",
        "init-finetune-steps": "warm start of the decoder copy on the baseline (steps)",
        "init-finetune-lr": "peak learning rate (cosine decay) of the decoder warm start",
        "z-steps": "Adam steps on z with the data loss",
        "finetune-steps": "Adam steps on the decoder copy with the data loss",
    }
    for name, kind in (("init-steps", int), ("init-lr", float), ("z-steps", int),
                       ("z-lr", float), ("init-finetune-steps", int),
                       ("init-finetune-lr", float), ("finetune-steps", int),
                       ("finetune-lr", float), ("latent-weight", float), ("tv-weight", float),
                       ("sparse-fraction", float), ("queries", int), ("angles", int),
                       ("bins", int), ("noise-snr-db", float), ("seed", int)):
        default = f"default: {_defaults_text(name.replace('-', '_'))}"
        parser.add_argument(f"--{name}", type=kind,
                            help=f"{helps[name]} ({default})" if name in helps else default)
    parser.add_argument("--all-queries", action="store_true",
                        help="use every observed gradient at each step (no random subsets)")
    parser.add_argument("--ct-direct", action="store_true",
                        help="integrate FunkNN along the rays (no rendered grid)")
    parser.set_defaults(func=run)


def _defaults_text(name: str) -> str:
    """The default of a SolveConfig field per problem, e.g. ``0; derivatives: 200``."""
    from funknn_fast.prior.solvers import PROBLEM_DEFAULTS, SolveConfig

    base = SolveConfig.__dataclass_fields__[name].default
    special = [f"{kind}: {values[name]}" for kind, values in PROBLEM_DEFAULTS.items()
               if name in values]
    return f"{base}" + (f"; {', '.join(special)}" if special else "")


def _config(args: argparse.Namespace):
    from funknn_fast.prior.solvers import SolveConfig, default_config

    values = {}
    for f in fields(SolveConfig):
        value = getattr(args, f.name, None)
        if value is not None and value is not False:
            values[f.name] = value
    if args.all_queries:
        values["queries"] = None
    try:
        return default_config(args.problem, **values)
    except ValueError as error:
        raise CommandError(str(error)) from error


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _figure(path: Path, problem: str, rows: list[dict], baseline_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("truth", "truth"), ("baseline", baseline_name), ("prior", "FunkNN prior")]
    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    key = "snr" if problem == "ct" else "si_snr"
    for r, row in enumerate(rows):
        for c, (name, title) in enumerate(columns):
            axis = axes[r, c]
            axis.imshow(row[name], cmap="gray")
            axis.set_axis_off()
            label = title if name == "truth" else f"{title}: {row[name + '_' + key]:.1f} dB"
            axis.set_title(f"#{row['index']} {label}", fontsize=9)
    figure.suptitle(f"{problem} ({'SNR' if key == 'snr' else 'shift-invariant SNR'})")
    figure.tight_layout()
    _atomic_write(path, lambda p: figure.savefig(p, dpi=100, format="png"))
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from funknn_fast.prior import solvers
    from funknn_fast.prior.generator import DEFAULT_PRIOR, PriorFileError, load_prior
    from funknn_fast.prior.phantoms import phantom_parameters

    if args.n_images < 1 or args.first < 0:
        raise CommandError(f"need --n-images >= 1 and --first >= 0, got {args.n_images}, "
                           f"{args.first}")
    config = _config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        prior = load_prior(args.weights or DEFAULT_PRIOR)
    except PriorFileError as error:
        raise CommandError(str(error)) from error
    phantoms = prior.info["phantoms"]
    indices = list(range(args.first, args.first + args.n_images))
    params = phantom_parameters(indices, "test", phantoms["seed"])
    problem = solvers.make_problem(args.problem, params, config, phantoms["edge_width"])
    baseline_name = "FBP" if args.problem == "ct" else "Poisson"
    start = time.perf_counter()
    baseline = solvers.baseline(problem)
    baseline_seconds = time.perf_counter() - start
    projection = solvers.autoencoder_projection(problem, prior, config.size,
                                                phantoms["edge_width"])
    estimates, seconds, final_losses = [], [], []
    total = config.total_steps
    for k, index in enumerate(indices):
        bar = tqdm(total=total, desc=f"{args.problem} #{index}", disable=args.quiet,
                   file=sys.stderr, leave=False)

        def progress(phase: str, step: int, loss: float, bar=bar) -> None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(phase=phase, loss=f"{loss:.4g}")

        start = time.perf_counter()
        result = solvers.solve(problem.select(k), prior, config, progress)
        seconds.append(time.perf_counter() - start)
        bar.close()
        estimates.append(result["estimate"])
        losses = result["losses"]["finetune"] or result["losses"]["z"]
        final_losses.append(losses[-1] if losses else None)
        scores = solvers.metrics(problem.truth[k : k + 1], result["estimate"])
        base = solvers.metrics(problem.truth[k : k + 1], baseline[k : k + 1])
        print(f"{args.problem} #{index}: prior SNR {scores['snr'][0]:.2f} dB, "
              f"SI-SNR {scores['si_snr'][0]:.2f} dB; {baseline_name} SNR {base['snr'][0]:.2f}"
              f" dB, SI-SNR {base['si_snr'][0]:.2f} dB ({seconds[-1]:.0f} s)", flush=True)
    estimate = torch.cat(estimates)
    results = {
        "prior": solvers.metrics(problem.truth, estimate),
        "baseline": solvers.metrics(problem.truth, baseline),
        "autoencoder_projection": solvers.metrics(problem.truth, projection),
    }
    summary = {
        name: {key: sum(values) / len(values) for key, values in scores.items()}
        for name, scores in results.items()
    }
    record = {
        "problem": args.problem,
        "baseline_method": baseline_name,
        "indices": indices,
        "mean": summary,
        "per_image": results,
        "final_loss": final_losses,
        "seconds_per_image": seconds,
        "baseline_seconds": baseline_seconds,
        "config": asdict(config),
        "weights": str(args.weights or DEFAULT_PRIOR),
        "phantoms": phantoms,
        "threads": torch.get_num_threads(),
        "command": "funknn " + " ".join(sys.argv[1:]) if sys.argv else "",
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{args.problem}.json", out_dir / f"{args.problem}.png"
    _atomic_write(json_path, lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
    rows = []
    for k in range(min(FIGURE_ROWS, len(indices))):
        row = {"index": indices[k], "truth": problem.truth[k, 0].numpy(),
               "baseline": baseline[k, 0].numpy(), "prior": estimate[k, 0].numpy()}
        for name in ("baseline", "prior"):
            for key in ("snr", "si_snr"):
                row[f"{name}_{key}"] = results[name][key][k]
        rows.append(row)
    _figure(png_path, args.problem, rows, baseline_name)
    print(f"mean over {len(indices)}: prior SNR {summary['prior']['snr']:.2f} / SI-SNR "
          f"{summary['prior']['si_snr']:.2f} dB; {baseline_name} SNR "
          f"{summary['baseline']['snr']:.2f} / SI-SNR {summary['baseline']['si_snr']:.2f} dB")
    print(f"wrote {json_path} and {png_path}")
    return 0
