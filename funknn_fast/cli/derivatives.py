"""``funknn derivatives``: gradient-magnitude and Laplacian maps of FunkNN's continuous image.

``funknn derivatives INPUT --scale S -o OUT.png`` reads INPUT (any image Pillow reads, as RGB in
[0, 1] by ``superres.data.load_image``: EXIF orientation applied, grey repeated, alpha composited
over white; averaged to grey for a one-channel model) and the FunkNN weights (``--weights``,
default the shipped ones, ``funknn_fast.models.checkpoint``), queries the model at the pixel
centres of an H x W grid (H = round(h S), W = round(w S)) and computes value, gradient and
Laplacian there exactly (patch jets + forward mode, ``funknn_fast.derivatives``), in units of the
output pixel. The PNG shows, side by side, |grad u| = sqrt(sum over channels of |grad u_c|^2) in
grey (0 up to its 99.5th percentile) and the channel-mean Laplacian in diverging colours (symmetric
about 0, saturating at the 99.5th percentile of its magnitude). ``--npy`` also writes the float32
array (2, H, W) = (|grad u|, Laplacian). Both outputs are checked (suffix, writable folder, created
if missing) before any work; ``--device``/``--dtype`` choose where and in which precision the
derivatives are computed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from funknn_fast.atomic_files import write_atomically
from funknn_fast.cli import CommandError, common

PROGRESS_BLOCKS = 32  # progress steps of a derivative map


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "derivatives", help="render gradient-magnitude and Laplacian maps of the continuous image",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="input image (PNG, JPEG, ...)")
    parser.add_argument("--scale", type=float, default=2.0, help="output size / input size")
    parser.add_argument("-o", "--output", "--out", dest="out", required=True,
                        help="PNG to write")
    parser.add_argument("--weights", help="FunkNN weights stem (default: the shipped cnn, "
                                           "funknn_cnn_continuous; exact jets need cnn or mlp)")
    parser.add_argument("--npy", help="also write (|grad u|, Laplacian) as a .npy array")
    parser.add_argument("--chunk", type=int, default=256, help="queries per network evaluation")
    common.add_device_options(parser, dtype=True)
    common.add_run_options(parser)
    parser.set_defaults(func=run)


def derivative_maps(model, image, height: int, width: int, chunk: int, progress: bool = False):
    """(|grad u|, Laplacian) as (H, W) float32 arrays for image (C, h, w), output-pixel units."""
    import torch
    from tqdm import tqdm

    from funknn_fast.derivatives import funknn_derivatives

    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack((grid_x, grid_y), dim=-1).reshape(1, -1, 2).to(image)
    block = max(chunk, -(-coords.shape[1] // PROGRESS_BLOCKS))
    magnitudes, laplacians = [], []
    with torch.no_grad():
        for start in tqdm(range(0, coords.shape[1], block), desc=f"derivatives {height}x{width}",
                          unit="block", disable=not progress, leave=False):
            d = funknn_derivatives(model, coords[:, start : start + block], image[None],
                                   order="laplacian", output_size=(height, width), chunk=chunk)
            magnitudes.append(d.gradient[0].square().sum(dim=(-1, -2)).sqrt())
            laplacians.append(d.laplacian[0].mean(dim=-1))
    magnitude = torch.cat(magnitudes).reshape(height, width)
    laplacian = torch.cat(laplacians).reshape(height, width)
    return magnitude.float().cpu().numpy(), laplacian.float().cpu().numpy()


def render_maps(magnitude: np.ndarray, laplacian: np.ndarray) -> np.ndarray:
    """(H, 2 W + gap, 3) uint8: the gradient magnitude (grey) beside the Laplacian (RdBu)."""
    from funknn_fast.extras import require

    colormaps = require("matplotlib").colormaps
    top = max(float(np.percentile(magnitude, 99.5)), 1e-12)
    grey = np.clip(magnitude / top, 0.0, 1.0)
    left = np.repeat(grey[..., None], 3, axis=-1)
    bound = max(float(np.percentile(np.abs(laplacian), 99.5)), 1e-12)
    right = colormaps["RdBu_r"](np.clip(0.5 + 0.5 * laplacian / bound, 0.0, 1.0))[..., :3]
    gap = np.ones((magnitude.shape[0], 4, 3))
    return (np.concatenate((left, gap, right), axis=1) * 255).round().astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from funknn_fast.models.checkpoint import DERIVATIVES_WEIGHTS, WeightsError, load_model
    from funknn_fast.superres.data import load_image

    if args.chunk < 1:
        raise CommandError(f"--chunk must be >= 1, got {args.chunk}")
    common.apply_threads(args)
    output = common.output_file(args.out, (".png",))
    npy = common.output_file(args.npy, (".npy",), "--npy") if args.npy else None
    try:
        image = load_image(args.input)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(f"INPUT: {error}") from error
    try:
        model = load_model(args.weights or DERIVATIVES_WEIGHTS)
    except WeightsError as error:
        raise CommandError(f"--weights: {error}") from error
    device, dtype = common.device_of(args), common.dtype_of(args)
    model, image = model.to(device=device, dtype=dtype), image.to(device=device, dtype=dtype)
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
    magnitude, laplacian = derivative_maps(model, image, height, width, args.chunk,
                                           progress=not args.quiet)
    picture = render_maps(magnitude, laplacian)
    write_atomically(output, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))
    if npy is not None:
        stacked = np.stack((magnitude, laplacian)).astype(np.float32)

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, stacked)

        write_atomically(npy, write_npy)
    print(f"wrote {args.out} (|grad u| and Laplacian, {height} x {width})")
    return 0
