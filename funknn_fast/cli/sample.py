"""``funknn sample``: draw continuous samples from the generative prior at any resolution.

``z ~ N(0, I)`` -> flow -> decoder -> ``d x d`` image -> FunkNN at the ``size x size`` pixel
centres. Writes a PNG grid (all samples on one grey scale, from the 1st to the 99th percentile)
and, with ``--npy``, the raw float32 array ``(n, 1, size, size)``.
"""

from __future__ import annotations

import argparse
import math
import os
import re

import numpy as np

from funknn_fast.atomic_files import write_atomically
from funknn_fast.cli import CommandError, common


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample", help="draw continuous samples from the generative prior",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--n", type=int, default=16, help="number of samples")
    parser.add_argument("--size", default="256",
                        help="output resolution: N (N x N pixels) or NxN (default 256)")
    parser.add_argument("--weights", help="prior file stem (default: the shipped prior)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draws")
    parser.add_argument("-o", "--output", "--out", dest="out", default="samples.png",
                        help="PNG grid to write (default samples.png)")
    parser.add_argument("--npy", help="also write the samples as a .npy array")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    common.add_device_options(parser)
    parser.set_defaults(func=run)


def write_grid(images: np.ndarray, path: str | os.PathLike, columns: int | None = None) -> None:
    """Writes ``images (n, 1, h, w)`` as one grey PNG grid (atomically), 2-pixel gaps."""
    from PIL import Image

    count, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    low, high = np.percentile(images, [1, 99])
    scaled = np.clip((images - low) / max(high - low, 1e-12), 0.0, 1.0)
    gap = 2
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap))
    for k in range(count):
        r, c = divmod(k, columns)
        canvas[r * (height + gap) : r * (height + gap) + height,
               c * (width + gap) : c * (width + gap) + width] = scaled[k, 0]
    picture = Image.fromarray((canvas * 255).round().astype(np.uint8))
    write_atomically(path, lambda tmp: picture.save(tmp, format="PNG"))


def square_size(text: str) -> int:
    """``N`` or ``NxN`` (the prior's samples are square) -> N >= 1."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match or (match.group(2) and match.group(2) != match.group(1)):
        raise CommandError(f"--size must be N or NxN (square samples), got {text!r}")
    if int(match.group(1)) < 1:
        raise CommandError(f"--size must be >= 1, got {text!r}")
    return int(match.group(1))


def run(args: argparse.Namespace) -> int:
    import torch

    from funknn_fast.prior.generator import DEFAULT_PRIOR, PriorFileError, load_prior

    if args.n < 1:
        raise CommandError(f"--n must be >= 1, got {args.n}")
    size = square_size(args.size)
    common.output_file(args.out, (".png",))
    if args.npy:
        common.output_file(args.npy, (".npy",), "--npy")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        prior = load_prior(args.weights or DEFAULT_PRIOR)
    except PriorFileError as error:
        raise CommandError(str(error)) from error
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        samples = prior.to(common.device_of(args)).sample(args.n, size, generator).cpu().numpy()
    write_grid(samples, args.out)
    print(f"wrote {args.out} ({args.n} samples, {size} x {size})")
    if args.npy:
        write_atomically(args.npy, lambda tmp: np.save(tmp, samples.astype(np.float32)), ".npy")
        print(f"wrote {args.npy}")
    return 0
