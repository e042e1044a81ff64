"""Where the continuous prior's ceiling comes from: FunkNN, the encoder or the decoder's range.

Every inverse problem of :mod:`funknn_fast.prior.solvers` reconstructs ``FunkNN(G(z))`` rendered
at ``n x n`` (``G`` the decoder, ``d x d`` images, ``d = 32`` shipped), so how close that can get
to the truth bounds every result. On phantoms ``--first .. --first + --count - 1`` of
``--split`` (validation by default: this is a tuning diagnostic), the table gives SNR and
inner-detail SNR (:func:`funknn_fast.prior.solvers.detail_snr`) against the phantom at the
``n x n`` pixel centres (the truth of the solvers) of:

* ``FunkNN(raster)``: FunkNN of the true ``d x d`` rasterisation (the field alone; a perfect
  generator would reach it);
* ``bicubic(raster)``: bicubic upsampling of the same raster (what FunkNN adds over resampling);
* ``FunkNN(G(E(x)))``: the auto-encoder projection (the diagnostic the solve records carry);
* ``FunkNN(G(z*))``: the decoder's range projection, ``z*`` fitted by ``--fit-steps`` Adam
  steps (lr ``--fit-lr``) from ``E(x)`` to the ``d x d`` raster in least squares (the best a
  solver that only moves ``z`` can do; the encoder's shortfall is the gap to the row above);
* ``FBP (CT)``: the filtered back-projection of the limited-view CT problem (noise seed 0), the
  detail target of issue 16.

The ``SNR at d`` column scores the ``d x d`` images against the raster itself (no FunkNN).
Each row is a mean over the phantoms with its standard deviation. Prints a markdown table and
writes it to ``--out`` if given.

Usage: python benchmarks/prior_ceiling.py [--weights STEM ...] [--split validation]
       [--first 0] [--count 20] [--size 64] [--fit-steps 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.prior import solvers
from funknn_fast.prior.generator import DEFAULT_PRIOR, ContinuousPrior, load_prior
from funknn_fast.prior.metrics import snr
from funknn_fast.prior.phantoms import phantom_parameters, rasterize

MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def range_projection(prior: ContinuousPrior, raster: torch.Tensor, steps: int, lr: float
                     ) -> torch.Tensor:
    """Latents ``(B, L)`` of the decoder that fit ``raster (B, 1, d, d)`` in least squares:
    Adam from the encoder's latents (each image's loss is independent of the others)."""
    autoencoder = prior.autoencoder
    with torch.no_grad():
        start = autoencoder.encoder(raster)
    z = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = (autoencoder.decoder(z) - raster).pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return z.detach()


def rows_for(prior: ContinuousPrior, params: torch.Tensor, size: int, edge_width: float,
             fit_steps: int, fit_lr: float) -> list[tuple[str, list[float], list[float], float]]:
    """``(name, SNR per image, detail SNR per image, mean SNR at d or nan)`` per row."""
    d = prior.autoencoder.size
    truth = rasterize(params, size, edge_width, supersample=1).float()
    # how the training images were made (prior.train.training_phantoms)
    raster = rasterize(params, d, edge_width, supersample=2).float()

    def scored(name, estimate, low=None):
        at_d = float("nan") if low is None else snr(low, raster).mean().item()
        return (name, snr(estimate, truth).tolist(),
                solvers.detail_snr(estimate, truth, params), at_d)

    rows = []
    with torch.no_grad():
        rows.append(scored("FunkNN(raster)", prior.render(raster, size)))
        rows.append(scored("bicubic(raster)", F.interpolate(
            raster, size=size, mode="bicubic", align_corners=False)))
        decoded = prior.autoencoder(raster)
        rows.append(scored("FunkNN(G(E(x)))", prior.render(decoded, size), decoded))
    z = range_projection(prior, raster, fit_steps, fit_lr)
    with torch.no_grad():
        fitted = prior.autoencoder.decoder(z)
        rows.append(scored(f"FunkNN(G(z*)), {fit_steps} steps", prior.render(fitted, size),
                           fitted))
    config = solvers.default_config("ct", "fbp", size=size, seed=0)
    problem = solvers.make_problem("ct", params, config, edge_width)
    rows.append(scored("FBP (CT, noise seed 0)", solvers.baseline(problem)))
    return rows


def table(results: dict[str, list], header: str) -> str:
    lines = [header, "", "| prior | reconstruction | SNR (dB) | detail SNR (dB) | SNR at d |",
             "| --- | --- | --- | --- | --- |"]
    for stem, rows in results.items():
        for name, values, detail, at_d in rows:
            at_d_text = "" if at_d != at_d else f"{at_d:.2f}"
            lines.append(
                f"| {stem} | {name} | {statistics.mean(values):.2f} ± "
                f"{statistics.stdev(values):.2f} | {statistics.mean(detail):.2f} ± "
                f"{statistics.stdev(detail):.2f} | {at_d_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, nargs="+", default=[DEFAULT_PRIOR],
                        help="prior file stems (default: the shipped prior)")
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="rendering grid n")
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--fit-lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.count < 2:
        parser.error(f"--count must be >= 2 (a spread is reported), got {args.count}")
    torch.set_num_threads(args.threads)
    results, start = {}, time.process_time()
    for stem in args.weights:
        prior = load_prior(stem)
        phantoms = prior.info["phantoms"]
        params = phantom_parameters(list(range(args.first, args.first + args.count)),
                                    args.split, phantoms["seed"])
        results[Path(stem).name] = rows_for(prior, params, args.size, phantoms["edge_width"],
                                            args.fit_steps, args.fit_lr)
    arguments = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/prior_ceiling.py " + " ".join(arguments)
    header = (f"{args.split} phantoms {args.first}-{args.first + args.count - 1}, n = "
              f"{args.size}; mean ± sd over the phantoms; `{command.strip()}`; "
              f"{MACHINE}, {platform.python_implementation()} torch {torch.__version__}, "
              f"{time.process_time() - start:.0f} CPU-s")
    text = ("## Where the continuous prior's ceiling comes from (issue 16)\n\n"
            + table(results, header))
    print(text)
    if args.out is not None:
        write_text_atomically(args.out, text)


if __name__ == "__main__":
    main()
