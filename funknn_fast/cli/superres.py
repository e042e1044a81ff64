"""``funknn superres``: render an image at any scale or size with the shipped FunkNN weights.

    funknn superres photo.png -o big.png --scale 3.5
    funknn superres photo.png -o wide.png --size 1920x1080     # W x H, any aspect ratio
    funknn superres --demo -o out/                             # the README demo

The demo takes a 224 x 224 crop of the held-out ``astronaut`` photograph as ground truth,
downscales it (antialiased bilinear, ``data.downscale``) by 3.5 and by 4, renders both back to
224 x 224 with FunkNN and with bicubic interpolation, writes the PNGs and a comparison figure to
the output folder and prints the PSNRs. Models trained in "factor" mode render recursively (x2
steps, ``inference.render_recursive``).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from funknn_fast.cli import CommandError

MAX_OUTPUT_PIXELS = 1 << 28
DEMO_PHOTO = "astronaut"
DEMO_BOX = (0, 120, 224)  # top, left, side of the ground-truth crop (the face)
DEMO_SCALES = (3.5, 4.0)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "superres", help="render an image larger (or smaller) with FunkNN",
        description="Render INPUT at --scale S or --size WxH with a FunkNN model (default: the "
                    "shipped weights); --demo runs the README demo on a bundled photograph.")
    parser.add_argument("input", nargs="?", help="input image (PNG or JPEG)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (.png/.jpg); with --demo an output folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scale", type=float, help="output / input size ratio (> 0)")
    group.add_argument("--size", help="output size WxH in pixels, e.g. 1024x768")
    parser.add_argument("--demo", action="store_true", help="run the demo (x3.5 and x4)")
    parser.add_argument("--demo-crop", type=int, default=DEMO_BOX[2],
                        help="side of the demo's ground-truth crop (a multiple of 28)")
    parser.add_argument("--weights", default=None,
                        help="weights (.safetensors with its .json); default: shipped weights")
    parser.add_argument("--recursive", action="store_true",
                        help="render by repeated x2 steps (default for factor-trained weights)")
    parser.add_argument("--chunk", type=int, default=None, help="queries per chunk")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (H, W)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise CommandError(f"--size must look like WIDTHxHEIGHT (e.g. 1024x768), got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        raise CommandError(f"--size must be at least 1x1, got {text!r}")
    return height, width


def load_weights(path: str | None):
    """The model and its metadata; errors as CommandError."""
    from funknn_fast.models.checkpoint import (
        DEFAULT_WEIGHTS,
        WeightsError,
        load_model,
        read_metadata,
    )

    path = path or DEFAULT_WEIGHTS
    try:
        return load_model(path), read_metadata(path)
    except WeightsError as error:
        raise CommandError(f"--weights: {error}") from error


def _check_output(path: Path, folder: bool = False) -> None:
    if folder:
        if path.exists() and not path.is_dir():
            raise CommandError(f"-o/--output {path} exists and is not a folder")
        return
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CommandError(f"-o/--output must end in .png, .jpg or .jpeg, got {path.name}")
    if not path.parent.is_dir():
        raise CommandError(f"-o/--output: folder {path.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.chunk is not None and args.chunk < 1:
        raise CommandError(f"--chunk must be >= 1, got {args.chunk}")
    if args.demo:
        if args.input or args.scale is not None or args.size:
            raise CommandError("--demo takes no INPUT, --scale or --size")
        return run_demo(args)
    if not args.input:
        raise CommandError("give an INPUT image (or --demo)")
    if args.scale is None and args.size is None:
        raise CommandError("give --scale S or --size WxH")
    output = Path(args.output)
    _check_output(output)
    from funknn_fast.superres.data import load_image, save_image
    from funknn_fast.superres.inference import DEFAULT_CHUNK, output_size, render, render_recursive

    try:
        image = load_image(args.input)
    except FileNotFoundError as error:
        raise CommandError(f"INPUT: {error}") from error
    except ValueError as error:
        raise CommandError(f"INPUT: {error}") from error
    height, width = image.shape[1:]
    try:
        size = output_size(height, width, scale=args.scale,
                           size=parse_size(args.size) if args.size else None)
    except ValueError as error:
        raise CommandError(f"--scale/--size: {error}") from error
    if size[0] * size[1] > MAX_OUTPUT_PIXELS:
        raise CommandError(f"output {size[1]}x{size[0]} exceeds {MAX_OUTPUT_PIXELS} pixels")
    model, info = load_weights(args.weights)
    recursive = args.recursive or info.get("train", {}).get("mode") == "factor"
    renderer = render_recursive if recursive else render
    began = time.perf_counter()
    out = renderer(model, image, size=size, chunk=args.chunk or DEFAULT_CHUNK, progress=True)
    seconds = time.perf_counter() - began
    save_image(out.clamp(0, 1), output)
    print(f"{args.input} ({width}x{height}) -> {output} ({size[1]}x{size[0]}) in {seconds:.1f} s")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """The README demo (see module docstring)."""
    from funknn_fast.superres.data import downscale, load_bundled_photo, save_image
    from funknn_fast.superres.evaluation import super_resolve, upsample
    from funknn_fast.superres.figures import comparison_figure
    from funknn_fast.superres.inference import DEFAULT_CHUNK
    from funknn_fast.superres.metrics import psnr

    folder = Path(args.output)
    _check_output(folder, folder=True)
    folder.mkdir(parents=True, exist_ok=True)
    model, info = load_weights(args.weights)
    recursive = args.recursive or info.get("train", {}).get("mode") == "factor"
    top, left, _ = DEMO_BOX
    side = args.demo_crop
    if side < 28 or side % 28:
        raise CommandError(f"--demo-crop must be a positive multiple of 28, got {side}")
    truth = load_bundled_photo(DEMO_PHOTO)[:, top : top + side, left : left + side].contiguous()
    save_image(truth, folder / f"{DEMO_PHOTO}_truth.png")
    rows = []
    print(f"FunkNN demo: {DEMO_PHOTO} crop {side}x{side} (held out of training), "
          f"weights {args.weights or 'shipped'}")
    print("| scale | input | bicubic PSNR (dB) | FunkNN PSNR (dB) | gain (dB) | FunkNN time (s) |")
    print("|---|---|---|---|---|---|")
    for scale in DEMO_SCALES:
        low_side = round(side / scale)
        low = downscale(truth, (low_side, low_side))
        bicubic = upsample(low, (side, side), "bicubic")
        began = time.perf_counter()
        funknn = super_resolve(model, low, (side, side), recursive,
                               chunk=args.chunk or DEFAULT_CHUNK)
        seconds = time.perf_counter() - began
        tag = f"x{scale:g}"
        for name, image in (("input", low), ("bicubic", bicubic), ("funknn", funknn)):
            save_image(image, folder / f"{DEMO_PHOTO}_{tag}_{name}.png")
        p_bic, p_fun = psnr(bicubic, truth), psnr(funknn, truth)
        print(f"| {tag} | {low_side}x{low_side} | {p_bic:.2f} | {p_fun:.2f} | "
              f"{p_fun - p_bic:+.2f} | {seconds:.1f} |")
        rows.append((tag, [(f"input {low_side}x{low_side}", low),
                           (f"bicubic {p_bic:.2f} dB", bicubic),
                           (f"FunkNN {p_fun:.2f} dB", funknn), ("ground truth", truth)]))
    figure = comparison_figure(rows, folder / "superres_demo.png")
    print(f"wrote PNGs and {figure} in {os.fspath(folder)}")
    return 0
