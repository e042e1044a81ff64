"""``funknn eval``: FunkNN against bicubic and bilinear on the held-out bundled photographs.

    funknn eval --results benchmarks/results/superres_quality.md \
        --figure benchmarks/results/superres_side_by_side.png

Protocol: ``funknn_fast.superres.evaluation`` (ground truth = centre crop of each held-out
photograph, input = its antialiased bilinear downscale, PSNR / SNR / shift-invariant SNR per image,
averaged).
Prints the Markdown table; ``--results`` also writes it (with the command, machine and date);
``--figure`` writes a side-by-side PNG (input, bicubic, FunkNN, ground truth, on the same crop).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import time
from pathlib import Path

from funknn_fast.cli import CommandError, common

MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="PSNR/SNR of FunkNN vs bicubic and bilinear on held-out photographs",
        description="Evaluate FunkNN super-resolution on the held-out bundled photographs.")
    parser.add_argument("--weights", default=None, help="weights (default: shipped weights)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4],
                        help="integer scales rendered directly (default 2 3 4)")
    parser.add_argument("--recursive-scales", type=int, nargs="*", default=[8],
                        help="integer scales rendered by repeated x2 (default 8)")
    parser.add_argument("--crop", type=int, default=240,
                        help="ground-truth centre crop side (0: whole images)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="bundled photo names or image files (default: the test split)")
    parser.add_argument("--results", default=None, help="write the Markdown table here")
    parser.add_argument("--figure", default=None, help="write a side-by-side PNG here")
    parser.add_argument("--chunk", type=int, default=None, help="queries per chunk")
    common.add_device_options(parser)
    common.add_run_options(parser)
    parser.set_defaults(func=run)


def _load_images(names: list[str] | None):
    from funknn_fast.superres.data import (
        BUNDLED_PHOTOS,
        TEST_PHOTOS,
        load_bundled_photo,
        load_image,
    )

    images = {}
    for name in names or list(TEST_PHOTOS):
        try:
            if name in BUNDLED_PHOTOS:
                images[name] = load_bundled_photo(name)
            else:
                images[Path(name).stem] = load_image(name)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(f"--images: {error}") from error
    return images


def run(args: argparse.Namespace) -> int:

    from funknn_fast.cli.superres import load_weights
    from funknn_fast.superres.evaluation import evaluate, markdown_table
    from funknn_fast.superres.inference import DEFAULT_CHUNK

    common.apply_threads(args)
    scales = list(args.scales) + list(args.recursive_scales)
    if not scales or min(scales) < 1:
        raise CommandError(f"scales must be integers >= 1, got {scales}")
    for scale in args.recursive_scales:
        if scale & (scale - 1):
            raise CommandError(f"--recursive-scales must be powers of 2, got {scale}")
    if args.crop < 0:
        raise CommandError(f"--crop must be >= 0, got {args.crop}")
    if args.results:
        common.output_file(args.results, (".md",), "--results")
    if args.figure:
        common.output_file(args.figure, (".png",), "--figure")
    device = common.device_of(args)
    model, info = load_weights(args.weights, device)
    images = {name: image.to(device) for name, image in _load_images(args.images).items()}
    began = time.perf_counter()
    try:
        results = evaluate(model, images, scales=scales, recursive=args.recursive_scales,
                           crop=args.crop or None, chunk=args.chunk or DEFAULT_CHUNK,
                           progress=not args.quiet)
    except ValueError as error:
        raise CommandError(str(error)) from error
    seconds = time.perf_counter() - began
    table = markdown_table(results)
    print(table)
    if args.results:
        write_results(args, info, images, table, results, seconds)
    if args.figure:
        write_figure(model, images, max(args.scales), args.figure, args.chunk or DEFAULT_CHUNK)
    return 0


def write_results(args, info, images, table, results, seconds) -> None:
    from funknn_fast.atomic_files import write_text_atomically

    command = "funknn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    per_image = ["| image | scale | bicubic PSNR | FunkNN PSNR | gain |", "|---|---|---|---|---|"]
    for name in images:
        for scale in sorted({r.scale for r in results}):
            rows = {r.method: r for r in results if r.image == name and r.scale == scale}
            gain = rows["funknn"].psnr - rows["bicubic"].psnr
            per_image.append(f"| {name} | x{scale} | {rows['bicubic'].psnr:.2f} | "
                             f"{rows['funknn'].psnr:.2f} | {gain:+.2f} |")
    train = info.get("train", {})
    text = "\n".join([
        "## Super-resolution quality (held-out bundled photographs)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {MACHINE} ({platform.machine()}), torch threads "
        f"{__import__('torch').get_num_threads()}; date "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
        f"evaluation took {seconds:.0f} s.  ",
        f"Weights: {args.weights or 'shipped'} ({info['model']['variant']} variant, "
        f"{train.get('mode', '?')} mode, {info.get('step', '?')} steps; trained by "
        f"`{info.get('command', '?')}`).  ",
        f"Images: {', '.join(images)}; ground truth = centre crop "
        f"{args.crop or 'whole image'}; input = antialiased bilinear downscale; "
        f"x{', x'.join(map(str, args.recursive_scales)) or '-'} rendered by repeated x2.",
        "",
        table,
        "",
        "Per image (PSNR, dB):",
        "",
        *per_image,
        "",
    ])
    write_text_atomically(args.results, text)
    print(f"wrote {args.results}")


def write_figure(model, images, scale: int, path: str, chunk: int) -> None:
    from funknn_fast.superres.data import downscale
    from funknn_fast.superres.evaluation import ground_truth, super_resolve, upsample
    from funknn_fast.superres.figures import comparison_figure
    from funknn_fast.superres.metrics import psnr

    rows = []
    for name, image in images.items():
        truth = ground_truth(image, 24 * scale, scale)  # a zoomed centre crop
        size = (truth.shape[1], truth.shape[2])
        low = downscale(truth, (size[0] // scale, size[1] // scale))
        bicubic = upsample(low, size, "bicubic")
        funknn = super_resolve(model, low, size, chunk=chunk)
        rows.append((f"{name} x{scale}", [
            (f"input {low.shape[2]}x{low.shape[1]}", low),
            (f"bicubic {psnr(bicubic, truth):.2f} dB", bicubic),
            (f"FunkNN {psnr(funknn, truth):.2f} dB", funknn),
            ("ground truth", truth)]))
    comparison_figure(rows, path)
    print(f"wrote {path}")
