"""``funknn solve {ct,derivatives,sparse-derivatives}``: inverse problems with the continuous prior.

Runs ``--method`` (:data:`funknn_fast.prior.solvers.METHODS`: the prior, the baselines FBP / TV
for ``ct`` and Poisson / TV-Poisson for the derivative problems, and the ablations ``bicubic``,
``warm-start``, ``funknn-of-baseline``, ``zero-start``) on phantoms of ``--split`` (``test``: the
final tables; ``validation``: every tuning decision), indices ``--first .. --first + --n-images
- 1``, with the noise (CT) and solver randomness of ``--seed``. Writes
``<out-dir>/<problem>[-<method>][-seed<seed>].json`` (method omitted for ``prior``, seed for 0):
per-image and mean SNR and shift-invariant SNR of the method (``estimate``), the classical
baseline (FBP / Poisson), the auto-encoder projection of the truth and FunkNN of the
area-averaged baseline (the warm start's target), the configuration, the command and timings;
and the same name ``.png`` (truth, baseline, method for the first images). Progress: one bar per
image (``--quiet`` turns it off).
``--workers N`` solves the images in N processes (``--threads`` each, default 1); every image
has its own seeded solver, so the results do not depend on N.
``--device`` (auto: CUDA when available) holds the prior and every tensor of every method (the
scipy baselines Poisson / TV compute on the CPU and hand their images back); the CT noise and the
query subsets are drawn on the CPU from ``--seed``, so they are the same on every device. There
is no ``--dtype``: the solver's step sizes and the tuned baselines are float32 / float64 as
written.

Grid independence (issue 16, item 4): ``--size`` sets the grid of the observations, the
baselines, the rendering and the metric; ``--sampling scattered --samples M --sample-seed S``
observes the derivative problems at ``M`` points uniform in ``[-1, 1]^2`` instead of the pixel
centres (the baselines then integrate them on the ``--size`` grid, the result is scored there);
``--eval-size N`` also scores the generator-based solutions rendered at ``N x N`` against the
phantom there (``per_image["estimate_at_eval_size"]``, and FunkNN of the averaged baseline).
Scattered runs are written as ``<problem>[-<method>]-scattered<M>[-seed<S>]``.

Defaults of the solver options depend on the problem (``PROBLEM_DEFAULTS`` in
:mod:`funknn_fast.prior.solvers`): the derivative problems warm-start ``z`` (and, for dense
gradients, the decoder copy) on the Poisson reconstruction before the gradient loss.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from funknn_fast.atomic_files import write_atomically, write_text_atomically
from funknn_fast.cli import CommandError, common

PROBLEMS = ("ct", "derivatives", "sparse-derivatives")
FIGURE_ROWS = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "solve", help="inverse problems (limited-view CT, derivative inversion) with the prior",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("problem", choices=PROBLEMS,
                        help="limited-view CT, dense or sparse derivative inversion")
    parser.add_argument("--method", default="prior",
                        help="prior (default), fbp / tv (ct), poisson / tv-poisson (derivative "
                             "problems), or an ablation: bicubic, warm-start, "
                             "funknn-of-baseline, zero-start")
    parser.add_argument("--split", default="test", choices=("test", "validation"),
                        help="phantom split (default test; tune on validation)")
    parser.add_argument("--weights", help="prior file stem (default: the shipped prior)")
    parser.add_argument("--n-images", type=int, default=4, help="number of test phantoms")
    parser.add_argument("--first", type=int, default=0, help="first test phantom index")
    parser.add_argument("-o", "--output", "--out-dir", dest="out_dir", default="solve_results",
                        help="output folder for PNG + JSON (created if missing)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (per worker)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes solving images in parallel (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_device_options(parser)
    parser.add_argument("--size", type=int, help="observation / rendering grid n (default 64)")
    helps = {
        "init-steps": "warm start: Adam steps fitting G(z) to the baseline (up to a constant)",
        "init-lr": "learning rate of the warm start of z",
        "init-finetune-steps": "warm start of the decoder copy on the baseline (steps)",
        "init-finetune-lr": "peak learning rate (cosine decay) of the decoder warm start",
        "z-steps": "Adam steps on z with the data loss",
        "finetune-steps": "Adam steps on the decoder copy with the data loss",
        "baseline-tv-weight": "TV weight of --method tv / tv-poisson",
        "baseline-steps": "primal-dual iterations of --method tv / tv-poisson",
    }
    for name, kind in (("init-steps", int), ("init-lr", float), ("z-steps", int),
                       ("z-lr", float), ("init-finetune-steps", int),
                       ("init-finetune-lr", float), ("finetune-steps", int),
                       ("finetune-lr", float), ("latent-weight", float), ("tv-weight", float),
                       ("sparse-fraction", float), ("queries", int), ("angles", int),
                       ("bins", int), ("noise-snr-db", float), ("seed", int),
                       ("baseline-tv-weight", float), ("baseline-steps", int)):
        default = f"default: {_defaults_text(name.replace('-', '_'))}"
        parser.add_argument(f"--{name}", type=kind,
                            help=f"{helps[name]} ({default})" if name in helps else default)
    parser.add_argument("--sampling", choices=("grid", "scattered"),
                        help="derivative problems: observe the pixel centres (grid, default) or "
                             "--samples points uniform in [-1, 1]^2 (scattered)")
    parser.add_argument("--samples", type=int,
                        help="scattered points M (default: size^2); needs --sampling scattered")
    parser.add_argument("--sample-seed", type=int,
                        help="seed of the scattered points (default: --seed)")
    parser.add_argument("--eval-size", type=int,
                        help="also score the continuous solution rendered on this grid")
    parser.add_argument("--all-queries", action="store_true",
                        help="use every observed gradient at each step (no random subsets)")
    parser.add_argument("--ct-direct", action="store_true",
                        help="integrate FunkNN along the rays (no rendered grid)")
    parser.set_defaults(func=run)


def _defaults_text(name: str) -> str:
    """The default of a SolveConfig field per problem, e.g. ``0; derivatives: 200``."""
    from funknn_fast.prior.solvers import (
        BASELINE_DEFAULTS,
        BASELINE_STEPS,
        PROBLEM_DEFAULTS,
        SolveConfig,
    )

    base = SolveConfig.__dataclass_fields__[name].default
    special = [f"{kind}: {values[name]}" for kind, values in PROBLEM_DEFAULTS.items()
               if name in values]
    if name == "baseline_tv_weight":
        base = "tuned on validation"
        special = [f"{kind}: {value:g}" for kind, value in BASELINE_DEFAULTS.items()]
    if name == "baseline_steps":
        base = "per problem"
        special = [f"{kind}: {value}" for kind, value in BASELINE_STEPS.items()]
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
    if args.sampling == "scattered" and args.problem == "ct":
        raise CommandError("--sampling scattered needs a derivative problem, not ct")
    try:
        return default_config(args.problem, args.method, **values)
    except ValueError as error:
        raise CommandError(str(error)) from error


def _figure(path: Path, problem: str, rows: list[dict], baseline_name: str,
            method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = "FunkNN prior" if method == "prior" else method
    columns = [("truth", "truth"), ("baseline", baseline_name), ("estimate", title)]
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
    write_atomically(path, lambda p: figure.savefig(p, dpi=100, format="png"), path.suffix)
    plt.close(figure)


def _solve_one(problem, prior, config, method, progress=None) -> dict:
    """Solve one single-image problem (on the prior's device): ``estimate (1, 1, n, n)`` on
    that device, ``seconds``, ``final_loss``."""
    from funknn_fast.prior import solvers

    start = time.perf_counter()
    result = solvers.run_method(method, problem, prior, config, progress)
    phases = result["losses"]
    losses = (phases.get("finetune") or phases.get("z") or phases.get("init_finetune")
              or phases.get("init") or phases.get("baseline"))
    return {"estimate": result["estimate"], "low_res": result.get("low_res"),
            "seconds": time.perf_counter() - start,
            "final_loss": losses[-1] if losses else None}


_WORKER_PRIOR = None


def _worker_init(weights: str, threads: int, device: str) -> None:
    import torch

    from funknn_fast.prior.generator import load_prior

    global _WORKER_PRIOR
    torch.set_num_threads(threads)
    _WORKER_PRIOR = load_prior(weights).to(device)


def _worker_solve(problem, config, method) -> dict:
    """:func:`_solve_one` in a worker: ``problem`` comes on the CPU, is solved on the worker
    prior's device, and the estimate goes back on the CPU (no device tensors between processes).
    """
    outcome = _solve_one(problem.to(_WORKER_PRIOR.device), _WORKER_PRIOR, config, method)
    low_res = outcome["low_res"]
    return {**outcome, "estimate": outcome["estimate"].cpu(),
            "low_res": None if low_res is None else low_res.cpu()}


def _solve_images(problem, prior, config, args):
    """Yield ``(k, outcome)`` for every image ``k`` of ``problem``, in completion order; the
    estimates on the prior's device (= the problem's)."""
    from tqdm import tqdm

    from funknn_fast.prior.solvers import method_steps

    count = problem.truth.shape[0]
    if args.workers == 1:
        for k in range(count):
            bar = tqdm(total=method_steps(args.method, config),
                       desc=f"{args.problem} #{args.first + k}",
                       disable=args.quiet, file=sys.stderr, leave=False)

            def progress(phase: str, step: int, loss: float, bar=bar) -> None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(phase=phase, loss=f"{loss:.4g}")

            outcome = _solve_one(problem.select(k), prior, config, args.method, progress)
            bar.close()
            yield k, outcome
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from funknn_fast.prior.generator import DEFAULT_PRIOR

    context = multiprocessing.get_context("spawn")
    weights = str(args.weights or DEFAULT_PRIOR)
    with ProcessPoolExecutor(max_workers=min(args.workers, count), mp_context=context,
                             initializer=_worker_init,
                             initargs=(weights, args.threads or 1, str(prior.device))) as pool:
        futures = {pool.submit(_worker_solve, problem.select(k).to("cpu"), config, args.method): k
                   for k in range(count)}
        with tqdm(total=count, desc=f"{args.problem} ({args.workers} workers)",
                  disable=args.quiet, file=sys.stderr, leave=False) as bar:
            for future in as_completed(futures):
                bar.update(1)
                outcome = future.result()
                low_res = outcome["low_res"]
                yield futures[future], {
                    **outcome, "estimate": outcome["estimate"].to(prior.device),
                    "low_res": None if low_res is None else low_res.to(prior.device)}


def output_stem(problem: str, method: str, seed: int, samples: int | None = None) -> str:
    """``<problem>[-<method>][-scattered<samples>][-seed<seed>]``: method omitted for
    ``prior``, samples for grid sampling (``None``), seed for 0."""
    stem = problem if method == "prior" else f"{problem}-{method}"
    if samples is not None:
        stem = f"{stem}-scattered{samples}"
    return stem if seed == 0 else f"{stem}-seed{seed}"


def _eval_size_scores(size, problem, prior, method, ordered, baseline, edge_width) -> dict:
    """Metrics on the ``size x size`` grid of ``--eval-size`` (against the phantom at its pixel
    centres) of the generator-based solutions (``estimate_at_eval_size``, from the ``low_res``
    of the ``ordered`` outcomes; none for grid-bound methods) and of FunkNN of the averaged
    ``baseline (B, 1, n, n)``."""
    import torch

    from funknn_fast.prior import solvers
    from funknn_fast.prior.phantoms import rasterize

    truth = rasterize(problem.params, size, edge_width, supersample=1)
    params = problem.params
    scores = {"funknn_of_baseline_at_eval_size": solvers.metrics(
        solvers.funknn_of_baseline(baseline, prior, size), truth, params)}
    rendered = [solvers.render_solution(method, outcome, prior, size) for outcome in ordered]
    if all(image is not None for image in rendered):
        scores["estimate_at_eval_size"] = solvers.metrics(torch.cat(rendered), truth, params)
    return scores


def run(args: argparse.Namespace) -> int:
    import torch

    from funknn_fast.prior import solvers
    from funknn_fast.prior.generator import DEFAULT_PRIOR, PriorFileError, load_prior
    from funknn_fast.prior.phantoms import phantom_parameters

    if args.n_images < 1 or args.first < 0:
        raise CommandError(f"need --n-images >= 1 and --first >= 0, got {args.n_images}, "
                           f"{args.first}")
    if args.workers < 1:
        raise CommandError(f"need --workers >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"need --threads >= 1, got {args.threads}")
    if args.eval_size is not None and args.eval_size < 1:
        raise CommandError(f"need --eval-size >= 1, got {args.eval_size}")
    if args.method not in solvers.METHODS[args.problem]:
        raise CommandError(f"--method for {args.problem} must be one of "
                           f"{', '.join(solvers.METHODS[args.problem])}, got {args.method!r}")
    config = _config(args)
    device = common.device_of(args)
    common.output_folder(args.out_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        prior = load_prior(args.weights or DEFAULT_PRIOR).to(device)
    except PriorFileError as error:
        raise CommandError(str(error)) from error
    phantoms = prior.info["phantoms"]
    indices = list(range(args.first, args.first + args.n_images))
    params = phantom_parameters(indices, args.split, phantoms["seed"]).to(device)
    problem = solvers.make_problem(args.problem, params, config, phantoms["edge_width"])
    baseline_name = {"ct": "FBP"}.get(args.problem,
                                      "Poisson (scattered)" if problem.scattered else "Poisson")
    start = time.perf_counter()
    baseline = solvers.baseline(problem)
    baseline_seconds = time.perf_counter() - start
    projection = solvers.autoencoder_projection(problem, prior, config.size,
                                                phantoms["edge_width"])
    solved = {}
    for k, outcome in _solve_images(problem, prior, config, args):
        solved[k] = outcome
        scores = solvers.metrics(outcome["estimate"], problem.truth[k : k + 1])
        base = solvers.metrics(baseline[k : k + 1], problem.truth[k : k + 1])
        print(f"{args.problem} #{indices[k]}: {args.method} SNR {scores['snr'][0]:.2f} dB, "
              f"SI-SNR {scores['si_snr'][0]:.2f} dB; {baseline_name} SNR {base['snr'][0]:.2f}"
              f" dB, SI-SNR {base['si_snr'][0]:.2f} dB ({outcome['seconds']:.0f} s)", flush=True)
    ordered = [solved[k] for k in range(len(indices))]
    estimate = torch.cat([outcome["estimate"] for outcome in ordered])
    params = problem.params
    results = {
        "estimate": solvers.metrics(estimate, problem.truth, params),
        "baseline": solvers.metrics(baseline, problem.truth, params),
        "autoencoder_projection": solvers.metrics(projection, problem.truth, params),
        "funknn_of_baseline": solvers.metrics(
            solvers.funknn_of_baseline(baseline, prior, config.size), problem.truth, params),
    }
    if args.eval_size:
        results.update(_eval_size_scores(args.eval_size, problem, prior, args.method, ordered,
                                         baseline, phantoms["edge_width"]))
    summary = {
        name: {key: sum(values) / len(values) for key, values in scores.items()}
        for name, scores in results.items()
    }
    record = {
        "problem": args.problem,
        "method": args.method,
        "split": args.split,
        "seed": config.seed,
        "size": config.size,
        "sampling": config.sampling,
        "samples": config.sample_count if config.sampling == "scattered" else None,
        "sample_seed": config.points_seed if config.sampling == "scattered" else None,
        "eval_size": args.eval_size,
        "baseline_method": baseline_name,
        "indices": indices,
        "mean": summary,
        "per_image": results,
        "final_loss": [outcome["final_loss"] for outcome in ordered],
        "seconds_per_image": [outcome["seconds"] for outcome in ordered],
        "baseline_seconds": baseline_seconds,
        "config": asdict(config),
        "baseline_tv_weight": solvers.baseline_tv_weight(args.problem, config),
        "baseline_steps": solvers.baseline_steps(args.problem, config),
        "weights": str(args.weights or DEFAULT_PRIOR),
        "phantoms": phantoms,
        "threads": torch.get_num_threads() if args.workers == 1 else (args.threads or 1),
        "workers": args.workers,
        "device": str(prior.device),
        "command": "funknn " + " ".join(sys.argv[1:]) if sys.argv else "",
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = output_stem(args.problem, args.method, config.seed,
                       config.sample_count if config.sampling == "scattered" else None)
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    write_text_atomically(json_path, json.dumps(record, indent=2) + "\n")
    rows = []
    for k in range(min(FIGURE_ROWS, len(indices))):
        row = {"index": indices[k], "truth": problem.truth[k, 0].cpu().numpy(),
               "baseline": baseline[k, 0].cpu().numpy(), "estimate": estimate[k, 0].cpu().numpy()}
        for name in ("baseline", "estimate"):
            for key in ("snr", "si_snr", "detail_snr"):
                row[f"{name}_{key}"] = results[name][key][k]
        rows.append(row)
    _figure(png_path, args.problem, rows, baseline_name, args.method)
    print(f"mean over {len(indices)}: {args.method} SNR {summary['estimate']['snr']:.2f} / "
          f"SI-SNR {summary['estimate']['si_snr']:.2f} dB; {baseline_name} SNR "
          f"{summary['baseline']['snr']:.2f} / SI-SNR {summary['baseline']['si_snr']:.2f} dB")
    print(f"wrote {json_path} and {png_path}")
    return 0
