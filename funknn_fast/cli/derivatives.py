"""``funknn derivatives``: gradient-magnitude and Laplacian maps of FunkNN's continuous image.

``funknn derivatives INPUT --scale S -o OUT.png`` reads INPUT (any image Pillow reads, as RGB
in [0, 1]; averaged to grey for a one-channel model) and the FunkNN weights (``--weights``,
default the shipped ones, ``funknn_fast.models.checkpoint``), queries the model at the pixel centres
of an H x W grid (H = round(h S), W = round(w S)) and computes value, gradient and Laplacian
there exactly (patch jets + forward mode, ``funknn_fast.derivatives``), in units of the output
pixel. The PNG shows, side by side, |grad u| = sqrt(sum over channels of |grad u_c|^2) in grey
(0 up to its 99.5th percentile) and the channel-mean Laplacian in diverging colours (symmetric
about 0, saturating at the 99.5th percentile of its magnitude). ``--npy`` also writes the
float32 array (2, H, W) = (|grad u|, Laplacian).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from funknn_fast.cli import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "derivatives", help="render gradient-magnitude and Laplacian maps of the continuous image",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("input", help="input image (PNG, JPEG, ...)")
    parser.add_argument("--scale", type=float, default=2.0, help="output size / input size")
    parser.add_argument("-o", "--out", required=True, help="PNG to write")
    parser.add_argument("--weights", help="FunkNN weights stem (default: the shipped weights)")
    parser.add_argument("--npy", help="also write (|grad u|, Laplacian) as a .npy array")
    parser.add_argument("--chunk", type=int, default=256, help="queries per network evaluation")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.set_defaults(func=run)


def derivative_maps(model, image, height: int, width: int, chunk: int):
    """(|grad u|, Laplacian) as (H, W) float32 arrays for image (C, h, w), output-pixel units."""
    import torch

    from funknn_fast.derivatives import funknn_derivatives

    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack((grid_x, grid_y), dim=-1).reshape(1, -1, 2).to(image.dtype)
    with torch.no_grad():
        d = funknn_derivatives(model, coords, image[None], order="laplacian",
                               output_size=(height, width), chunk=chunk)
    magnitude = d.gradient[0].square().sum(dim=(-1, -2)).sqrt().reshape(height, width)
    laplacian = d.laplacian[0].mean(dim=-1).reshape(height, width)
    return magnitude.float().numpy(), laplacian.float().numpy()


def render_maps(magnitude: np.ndarray, laplacian: np.ndarray) -> np.ndarray:
    """(H, 2 W + gap, 3) uint8: the gradient magnitude (grey) beside the Laplacian (RdBu)."""
    from matplotlib import colormaps

    top = max(float(np.percentile(magnitude, 99.5)), 1e-12)
    grey = np.clip(magnitude / top, 0.0, 1.0)
    left = np.repeat(grey[..., None], 3, axis=-1)
    bound = max(float(np.percentile(np.abs(laplacian), 99.5)), 1e-12)
    right = colormaps["RdBu_r"](np.clip(0.5 + 0.5 * laplacian / bound, 0.0, 1.0))[..., :3]
    gap = np.ones((magnitude.shape[0], 4, 3))
    return (np.concatenate((left, gap, right), axis=1) * 255).round().astype(np.uint8)


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from funknn_fast.models.checkpoint import DEFAULT_WEIGHTS, WeightsError, load_model

    if args.chunk < 1:
        raise CommandError(f"--chunk must be >= 1, got {args.chunk}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.input).is_file():
        raise CommandError(f"input image not found: {args.input}")
    try:
        with Image.open(args.input) as picture:
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read {args.input}: {error}") from error
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    try:
        model = load_model(args.weights or DEFAULT_WEIGHTS)
    except WeightsError as error:
        raise CommandError(str(error)) from error
    if model.channels == 1:
        image = image.mean(dim=0, keepdim=True)
    elif model.channels != image.shape[0]:
        raise CommandError(f"the model takes {model.channels} channels, the image has "
                           f"{image.shape[0]}")
    if not np.isfinite(args.scale) or args.scale <= 0:
        raise CommandError(f"--scale must be a finite number > 0, got {args.scale}")
    height, width = round(image.shape[1] * args.scale), round(image.shape[2] * args.scale)
    if min(height, width) < 1:
        raise CommandError(f"--scale {args.scale} makes the output smaller than one pixel")
    magnitude, laplacian = derivative_maps(model, image, height, width, args.chunk)
    picture = render_maps(magnitude, laplacian)
    _write_atomic(Path(args.out), lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))
    if args.npy:
        stacked = np.stack((magnitude, laplacian)).astype(np.float32)

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, stacked)

        _write_atomic(Path(args.npy), write_npy)
    print(f"wrote {args.out} (|grad u| and Laplacian, {height} x {width})")
    return 0
