"""``funknn superres``: render images at any scale or size with the shipped FunkNN weights.

    funknn superres photo.png -o big.png --scale 3.5
    funknn superres photo.png -o wide.png --size 1920x1080     # W x H, any aspect ratio
    funknn superres a.png b.jpg photos/ -o big/ --scale 2      # several inputs: -o is a folder
    funknn superres --demo -o out/                             # the README demo

Images are read with their orientation (EXIF), bit depth and mode (``superres.image_io``) and
rendered by ``superres.image_render`` (grey stays grey, alpha is carried, downscaling is
antialiased); a 16-bit grey PNG is written back with 16 bits. With one INPUT file and an OUTPUT
with a suffix (.png, .jpg or .jpeg), OUTPUT is that file; otherwise (several inputs, or a
folder, whose image files are all taken) OUTPUT is a folder, created if missing, and each
image keeps its name (``.png`` for formats Pillow cannot write here). Outputs are checked
before any work: writable folder, no two inputs with the same output, never an INPUT
overwritten unless ``--if-exists overwrite`` is given explicitly; ``--if-exists skip`` leaves
existing outputs. Inputs are read one at a time: an unreadable one stops the batch with an error
naming it (the outputs written before it stay, each complete).

The demo takes a 224 x 224 crop of the held-out ``astronaut`` photograph as ground truth,
downscales it (Pillow's bicubic, ``degradations.degrade``: the usual super-resolution benchmark
degradation and the one the default weights are measured on) by 3.5 and by 4, renders both back to
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

from funknn_fast.cli import CommandError, common

MAX_OUTPUT_PIXELS = 1 << 28
DEMO_PHOTO = "astronaut"
DEMO_BOX = (0, 120, 224)  # top, left, side of the ground-truth crop (the face)
DEMO_SCALES = (3.5, 4.0)
READ_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")
IF_EXISTS = ("overwrite", "skip", "error")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "superres", help="render images larger (or smaller) with FunkNN",
        description=__doc__.split("\n\nThe demo")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files or folders of images (PNG, JPEG, TIFF, ...)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image (.png/.jpg/.jpeg) for one input, else an output "
                             "folder (also with --demo)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scale", type=float, help="output / input size ratio (> 0)")
    group.add_argument("--size", help="output size WxH in pixels, e.g. 1024x768")
    parser.add_argument("--if-exists", choices=IF_EXISTS, default=None,
                        help="when an output exists: overwrite (default; needed explicitly to "
                             "overwrite an input), skip it, or stop with an error")
    parser.add_argument("--jpeg-quality", type=int, default=95,
                        help="quality of JPEG outputs, 1-100 (default 95)")
    parser.add_argument("--demo", action="store_true", help="run the demo (x3.5 and x4)")
    parser.add_argument("--demo-crop", type=int, default=DEMO_BOX[2],
                        help="side of the demo's ground-truth crop (a multiple of 28)")
    parser.add_argument("--weights", "--model", default=None,
                        help="weights (.safetensors with its .json) or the name of shipped "
                             "weights (funknn_fast/weights/NAME.json); default: shipped default")
    parser.add_argument("--no-shared", action="store_true",
                        help="lattice models: evaluate every pixel on its own (per-query path) "
                             "instead of the shared-computation grid engine (same values)")
    parser.add_argument("--recursive", action="store_true",
                        help="render by repeated x2 steps (default for factor-trained weights)")
    parser.add_argument("--chunk", type=int, default=None, help="queries per chunk")
    common.add_device_options(parser, dtype=True)
    common.add_run_options(parser)
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


def load_weights(path: str | None, device=None, dtype=None):
    """The model (on ``device`` in ``dtype`` when given) and its metadata; CommandError."""
    from funknn_fast.models.checkpoint import (
        DEFAULT_WEIGHTS,
        WeightsError,
        load_model,
        read_metadata,
        resolve_weights,
    )

    path = resolve_weights(path) if path else DEFAULT_WEIGHTS
    try:
        model, info = load_model(path), read_metadata(path)
    except WeightsError as error:
        raise CommandError(f"--weights: {error}") from error
    return model.to(device=device, dtype=dtype), info


def _input_files(inputs: list[str]) -> list[Path]:
    files = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in READ_SUFFIXES)
            if not found:
                raise CommandError(f"INPUT: no image files in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"INPUT: image file not found: {path}")
    return files


def _output_paths(files: list[Path], args: argparse.Namespace) -> list[Path]:
    """One output per input, checked (see module docstring) before any work."""
    from funknn_fast.superres.image_io import FORMATS

    output = Path(args.output)
    single = (len(args.inputs) == 1 and not Path(args.inputs[0]).is_dir()
              and output.suffix != "" and not output.is_dir())
    if single:
        outputs = [common.output_file(args.output, tuple(FORMATS))]
    else:
        folder = common.output_folder(args.output)
        outputs = [folder / (f.name if f.suffix.lower() in FORMATS else f.stem + ".png")
                   for f in files]
    seen: dict[Path, Path] = {}
    for source, target in zip(files, outputs):
        key = target.resolve()
        if key in seen:
            raise CommandError(f"-o/--output: {seen[key]} and {source} would both write {target}")
        seen[key] = source
        if key in {f.resolve() for f in files} and args.if_exists != "overwrite":
            raise CommandError(f"-o/--output {target} is an input; refusing to overwrite it "
                               "(give --if-exists overwrite to replace it)")
        if target.exists() and args.if_exists == "error":
            raise CommandError(f"-o/--output: {target} exists (--if-exists error)")
    return outputs


def _check_options(args: argparse.Namespace) -> None:
    if args.chunk is not None and args.chunk < 1:
        raise CommandError(f"--chunk must be >= 1, got {args.chunk}")
    if not 1 <= args.jpeg_quality <= 100:
        raise CommandError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    if args.demo:
        if args.inputs or args.scale is not None or args.size:
            raise CommandError("--demo takes no INPUT, --scale or --size")
        return
    if not args.inputs:
        raise CommandError("give an INPUT image (or --demo)")
    if args.scale is None and args.size is None:
        raise CommandError("give --scale S or --size WxH")


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    common.apply_threads(args)
    if args.demo:
        return run_demo(args)
    files = _input_files(args.inputs)
    outputs = _output_paths(files, args)
    size = parse_size(args.size) if args.size else None
    model, info = load_weights(args.weights, common.device_of(args), common.dtype_of(args))
    model.shared_render = not args.no_shared  # read by inference.render (lattice variant)
    recursive = args.recursive or info.get("train", {}).get("mode") == "factor"
    bar = _progress(len(files), args.quiet)
    for source, target in zip(files, outputs):
        if target.exists() and args.if_exists == "skip":
            print(f"{source}: {target} exists, skipped")
        else:
            _render_file(model, source, target, size, recursive, args)
        bar.update(1)
    bar.close()
    return 0


def _progress(total: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="images", unit="image", disable=quiet or total == 1,
                leave=False)


def _render_file(model, source: Path, target: Path, size, recursive: bool,
                 args: argparse.Namespace) -> None:
    from funknn_fast.superres.image_io import ImageFileError, read_image, write_image
    from funknn_fast.superres.image_render import render_image
    from funknn_fast.superres.inference import DEFAULT_CHUNK, output_size

    try:
        image = read_image(source)
    except ImageFileError as error:
        raise CommandError(f"INPUT: {error}") from error
    height, width = image.pixels.shape[1:]
    try:
        out_size = output_size(height, width, scale=args.scale, size=size)
    except ValueError as error:
        raise CommandError(f"--scale/--size: {error}") from error
    if out_size[0] * out_size[1] > MAX_OUTPUT_PIXELS:
        raise CommandError(f"output {out_size[1]}x{out_size[0]} of {source} exceeds "
                           f"{MAX_OUTPUT_PIXELS} pixels")
    began = time.perf_counter()
    out = render_image(model, image, out_size, recursive, chunk=args.chunk or DEFAULT_CHUNK,
                       progress=not args.quiet)
    seconds = time.perf_counter() - began
    try:
        write_image(target, out.pixels, out.alpha, out.bits, quality=args.jpeg_quality)
    except ImageFileError as error:
        raise CommandError(f"-o/--output: {error}") from error
    print(f"{source} ({width}x{height}) -> {target} ({out_size[1]}x{out_size[0]}) "
          f"in {seconds:.1f} s")


def run_demo(args: argparse.Namespace) -> int:
    """The README demo (see module docstring)."""
    from funknn_fast.superres.data import load_bundled_photo, save_image
    from funknn_fast.superres.degradations import degrade
    from funknn_fast.superres.evaluation import upsample
    from funknn_fast.superres.figures import comparison_figure
    from funknn_fast.superres.image_io import ImageFile
    from funknn_fast.superres.image_render import render_image
    from funknn_fast.superres.inference import DEFAULT_CHUNK
    from funknn_fast.superres.metrics import psnr

    top, left, _ = DEMO_BOX
    side = args.demo_crop
    if side < 28 or side % 28:
        raise CommandError(f"--demo-crop must be a positive multiple of 28, got {side}")
    folder = common.output_folder(args.output)
    model, info = load_weights(args.weights, common.device_of(args), common.dtype_of(args))
    recursive = args.recursive or info.get("train", {}).get("mode") == "factor"
    truth = load_bundled_photo(DEMO_PHOTO)[:, top : top + side, left : left + side].contiguous()
    save_image(truth, folder / f"{DEMO_PHOTO}_truth.png")
    rows = []
    print(f"FunkNN demo: {DEMO_PHOTO} crop {side}x{side} (held out of training), "
          f"weights {args.weights or 'shipped'}")
    print("| scale | input | bicubic PSNR (dB) | FunkNN PSNR (dB) | gain (dB) | FunkNN time (s) |")
    print("|---|---|---|---|---|---|")
    for scale in DEMO_SCALES:
        low_side = round(side / scale)
        low = degrade(truth, (low_side, low_side), "bicubic").clamp(0, 1)
        bicubic = upsample(low, (side, side), "bicubic")
        began = time.perf_counter()
        funknn = render_image(model, ImageFile(low), (side, side), recursive,
                              chunk=args.chunk or DEFAULT_CHUNK, progress=not args.quiet).pixels
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
