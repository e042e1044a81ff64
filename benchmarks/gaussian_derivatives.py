"""Derivative accuracy of FunkNN on Gaussian bumps (the paper's appendix experiment).

Images: u(x, y) = exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2)) on the field of view [-1, 1]^2
(normalised coordinates of ``funknn_fast``), centre (x0, y0) uniform in the field of view, width
sigma uniform in [0.1, 0.4] of the field of view (sigma = 2 s, s ~ U[0.1, 0.4]). The
low-resolution input is the point sampling of u at the centres of an n x n pixel grid (n = 16 by
default). Gradient and Laplacian are known in closed form.

Training (one model per activation, ReLU by default; ``--activations relu sin`` adds a sin model,
which diverged at lr 1e-4 in our one attempt): FunkNN (MLP variant by default: its
per-query cost is about 8x lower than the CNN's, which keeps each training within the budget of a
shared 2-core machine), fresh random Gaussians every step, random query coordinates, and a loss
made of the relative squared errors of the value, the gradient and the Laplacian,
    e_v = ||u_hat - u||^2 / ||u||^2, e_g = ||grad u_hat - grad u||^2 / ||grad u||^2,
    e_l = ||lap u_hat - lap u||^2 / ||lap u||^2   (sums over the batch),
combined as log e_v + log e_g + w log e_l (``--loss log``, the default, w =
``--laplacian-weight``, 1 by default: minus the sum of the three
SNRs in dB / 10, so every quantity counts in dB and none is traded away for another) or as
e_v + e_g + e_l (``--loss sum``: the Laplacian's error, by far the largest, dominates and the value
gets worse than plain interpolation). u_hat and its derivatives come from
``funknn_fast.derivatives.funknn_derivatives``
(patch jets + forward mode; the loss is differentiated through them). The last linear layer
starts at zero, so training starts from plain Keys-cubic interpolation (the centre-sample
residual). Adam, cosine-decayed lr.

Evaluation: 64 fresh Gaussians, the x2 (2n x 2n) and x4 (4n x 4n) grids of pixel centres;
SNR = 10 log10(||truth||^2 / ||truth - estimate||^2) per image (the gradient as a 2-vector field),
averaged over images; the baseline is plain Keys-cubic interpolation of the low-resolution image
(the same reflection padding; its derivatives are exact derivatives of the interpolant, from
``patch_sample_jets`` with a 1 x 1 patch).

Writes benchmarks/results/derivatives_gaussian.md and docs/gaussian_derivatives.png.
Usage: nice -n 10 python benchmarks/gaussian_derivatives.py [--steps N] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import pathlib
import sys
import time

import torch

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.derivatives import funknn_derivatives
from funknn_fast.models.funknn import FunkNN
from funknn_fast.ops.jets import patch_sample_jets

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "derivatives_gaussian.md"
FIGURE = ROOT / "docs" / "gaussian_derivatives.png"
MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def random_gaussians(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (count, 2) uniform in [-1, 1]^2 and widths (count,) = 2 * U[0.1, 0.4]."""
    centres = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 2 - 1
    sigmas = 2 * (0.1 + 0.3 * torch.rand(count, generator=generator, dtype=torch.float64))
    return centres, sigmas


def gaussian_fields(coords: torch.Tensor, centres: torch.Tensor, sigmas: torch.Tensor):
    """Value (B, Q), gradient (B, Q, 2) and Laplacian (B, Q) at coords (B, Q, 2)."""
    diff = coords - centres[:, None, :]
    var = (sigmas * sigmas)[:, None]
    r2 = diff.square().sum(-1)
    value = torch.exp(-r2 / (2 * var))
    gradient = -value[..., None] * diff / var[..., None]
    laplacian = value * (r2 / var.square() - 2 / var)
    return value, gradient, laplacian


def grid_coords(height: int, width: int, batch: int) -> torch.Tensor:
    """(batch, H W, 2) pixel centres of an H x W grid, row-major."""
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy), dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


def low_resolution(centres: torch.Tensor, sigmas: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, n, n) point samples of the Gaussians at the pixel centres of an n x n grid."""
    value, _, _ = gaussian_fields(grid_coords(size, size, len(sigmas)), centres, sigmas)
    return value.reshape(-1, 1, size, size)


def relative_error(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return (estimate - truth).square().sum() / truth.square().sum().clamp_min(1e-12)


def train(activation: str, args: argparse.Namespace) -> tuple[FunkNN, float, list[float]]:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    model = FunkNN(channels=1, variant=args.variant, activation=activation)
    with torch.no_grad():  # start as plain Keys-cubic interpolation (the centre-sample residual)
        model.linears[-1].weight.zero_()
        model.linears[-1].bias.zero_()
    lr = args.lr_relu if activation == "relu" else args.lr_sin
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, args.steps) / args.steps))
    )
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        centres, sigmas = random_gaussians(args.batch, generator)
        image = low_resolution(centres, sigmas, args.size).float()
        coords = torch.rand(args.batch, args.queries, 2, generator=generator,
                            dtype=torch.float64) * 2 - 1
        value, gradient, laplacian = gaussian_fields(coords, centres, sigmas)
        d = funknn_derivatives(model, coords.float(), image, order="laplacian", chunk=None)
        errors = torch.stack((
            relative_error(d.value[..., 0], value.float()),
            relative_error(d.gradient[..., 0, :], gradient.float()),
            relative_error(d.laplacian[..., 0], laplacian.float()),
        ))
        weights = torch.tensor([1.0, 1.0, args.laplacian_weight])
        loss = (weights * (errors.log() if args.loss == "log" else errors)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - start
            recent = sum(losses[-50:]) / len(losses[-50:])
            print(f"[{activation}] step {step:5d} loss {recent:.4f} ({elapsed:.0f} s)", flush=True)
    return model, time.perf_counter() - start, losses


def snr_db(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image SNR in dB; estimate and truth (B, ...)."""
    signal = truth.flatten(1).square().sum(1)
    noise = (truth - estimate).flatten(1).square().sum(1)
    return 10 * torch.log10(signal / noise)


def interpolation_fields(image: torch.Tensor, coords: torch.Tensor):
    """Value, gradient and Laplacian of plain Keys-cubic interpolation of image at coords."""
    jets = patch_sample_jets(image, coords.to(image.dtype), 1.0, patch_size=1,
                             derivatives="laplacian")[:, :, :, 0, 0, 0]
    return jets[0], torch.stack((jets[1], jets[2]), dim=-1), jets[3]


def model_fields(model: FunkNN, image: torch.Tensor, coords: torch.Tensor):
    with torch.no_grad():
        d = funknn_derivatives(model, coords.to(image.dtype), image, order="laplacian", chunk=2048)
    return d.value[..., 0], d.gradient[..., 0, :], d.laplacian[..., 0]


def evaluate(models: dict[str, FunkNN], args: argparse.Namespace):
    generator = torch.Generator().manual_seed(12345)
    centres, sigmas = random_gaussians(args.test_images, generator)
    image = low_resolution(centres, sigmas, args.size).float()
    table: dict[str, dict[int, tuple[float, float, float]]] = {}
    figure_data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    methods = {"Keys cubic interpolation": None, **models}
    for factor in (2, 4):
        side = args.size * factor
        coords = grid_coords(side, side, args.test_images)
        truth = gaussian_fields(coords, centres, sigmas)
        if factor == 4:
            figure_data["truth"] = (truth[1][0].norm(dim=-1), truth[2][0])
        for name, model in methods.items():
            fields = (interpolation_fields(image, coords) if model is None
                      else model_fields(model, image, coords))
            fields = [f.double() for f in fields]
            table.setdefault(name, {})[factor] = tuple(
                float(snr_db(est, ref).mean()) for est, ref in zip(fields, truth, strict=True)
            )
            if factor == 4:
                figure_data[name] = (fields[1][0].norm(dim=-1), fields[2][0])
    return table, figure_data, centres[0], sigmas[0]


def save_figure(figure_data, side: int, centre, sigma, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(figure_data)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6.4))
    truth_grad, truth_lap = figure_data["truth"]
    limits = (float(truth_grad.max()), float(truth_lap.abs().max()))
    for col, name in enumerate(names):
        panels = ((figure_data[name][0], "|grad u|", "viridis"),
                  (figure_data[name][1], "Laplacian", "RdBu_r"))
        for row, (field, title, cmap) in enumerate(panels):
            ax = axes[row, col]
            image = field.reshape(side, side).numpy()
            if row == 0:
                ax.imshow(image, cmap=cmap, vmin=0, vmax=limits[0])
            else:
                ax.imshow(image, cmap=cmap, vmin=-limits[1], vmax=limits[1])
            label = name
            if name != "truth":
                snr = float(snr_db(field[None], figure_data["truth"][row][None]))
                label = f"{name}\nSNR {snr:.1f} dB"
            ax.set_title(f"{title}: {label}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"Gaussian bump, x4 grid ({side}x{side}), centre ({centre[0]:.2f}, "
                 f"{centre[1]:.2f}), sigma {sigma:.2f} (normalised units)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16, help="low-resolution side n")
    parser.add_argument("--variant", default="mlp", choices=("mlp", "cnn"))
    parser.add_argument("--activations", nargs="+", default=["relu"], help="relu and/or sin")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16, help="images per step")
    parser.add_argument("--queries", type=int, default=32, help="queries per image per step")
    parser.add_argument("--lr-relu", type=float, default=3e-4)
    parser.add_argument("--lr-sin", type=float, default=1e-4)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", default="log", choices=("log", "sum"),
                        help="log: sum of log relative errors (equal weight in dB); sum: their sum")
    parser.add_argument("--laplacian-weight", type=float, default=1.0,
                        help="weight of the Laplacian term (value and gradient weigh 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models, times = {}, {}
    for activation in args.activations:
        model, seconds, _ = train(activation, args)
        models[f"FunkNN {args.variant.upper()} {activation}"] = model.eval()
        times[activation] = seconds
    table, figure_data, centre, sigma = evaluate(models, args)

    header = ("| method | value x2 | gradient x2 | Laplacian x2 | value x4 | gradient x4 "
              "| Laplacian x4 |\n|---|---|---|---|---|---|---|")
    rows = [f"| {name} | " + " | ".join(f"{v:.2f}" for f in (2, 4) for v in snr[f]) + " |"
            for name, snr in table.items()]
    base = table["Keys cubic interpolation"]
    gains = [f"- {name}: Laplacian SNR {snr[2][2] - base[2][2]:+.2f} dB at x2, "
             f"{snr[4][2] - base[4][2]:+.2f} dB at x4 over Keys cubic interpolation"
             for name, snr in table.items() if name != "Keys cubic interpolation"]
    command = "nice -n 10 python benchmarks/gaussian_derivatives.py " + " ".join(sys.argv[1:])
    trained = ", ".join(f"{a}: {t / 60:.1f} min" for a, t in times.items())
    section = "\n".join([
        "## Derivative accuracy on Gaussian bumps (SNR in dB, higher is better)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {MACHINE}, {args.threads} thread(s), shared with other jobs; "
        f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Low-resolution input {args.size}x{args.size} point samples of a Gaussian bump (centre "
        "uniform in the field of view, sigma uniform in [0.1, 0.4] of the field of view); "
        f"SNR averaged over {args.test_images} test bumps on the x2 ({2 * args.size}^2) and x4 "
        f"({4 * args.size}^2) grids of pixel centres, against the analytic value, gradient and "
        "Laplacian.",
        f"FunkNN {args.variant.upper()} trained {args.steps} steps x {args.batch} images x "
        f"{args.queries} queries on fresh bumps with the loss "
        + ("log relative-MSE(value) + log relative-MSE(gradient) + "
           f"{args.laplacian_weight:g} log relative-MSE(Laplacian)"
           if args.loss == "log" else
           "relative-MSE(value) + relative-MSE(gradient) + "
           f"{args.laplacian_weight:g} relative-MSE(Laplacian)")
        + ", last layer zero-initialised so "
        "training starts from plain Keys-cubic interpolation; derivatives from the patch-jets "
        f"forward mode (training time {trained}).",
        "",
        header,
        *rows,
        "",
        *gains,
        "",
        "Figure: `docs/gaussian_derivatives.png` (|grad u| and Laplacian on the x4 grid of one "
        "test bump: truth, Keys cubic interpolation, FunkNN).",
    ]) + "\n"
    print(section)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(RESULTS, section)
    save_figure(figure_data, 4 * args.size, centre.tolist(), float(sigma), FIGURE)


if __name__ == "__main__":
    main()
