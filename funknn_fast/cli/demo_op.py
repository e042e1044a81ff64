"""Demo of the core op on a bundled photograph: patch sampling with every available backend.

Loads skimage's astronaut (512 x 512 RGB), samples 9 x 9 patches around random query coordinates
with each available backend, checks them against the float64 reference and prints a timing
table (forward, and forward + backward w.r.t. image and coordinates).

Usage: python -m funknn_fast.cli.demo_op [--queries N]
"""

from __future__ import annotations

import argparse
import time

import torch

import funknn_fast


def bundled_photograph() -> torch.Tensor:
    """skimage's astronaut as a (1, 3, 512, 512) float32 tensor in [0, 1]."""
    from funknn_fast.extras import require

    data = require("skimage.data")
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).unsqueeze(0).float() / 255


def timed(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=65536)
    args = parser.parse_args(argv)
    image = bundled_photograph()
    coords = torch.rand(1, args.queries, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    step = torch.tensor([1.0, 1.0])
    reference = funknn_fast.patch_sample(
        image.double(), coords.double(), step.double(), backend="torch"
    )
    print(f"astronaut 3 x 512 x 512, {args.queries} queries, 9 x 9 patches, float32")
    print("| backend | max abs error vs float64 | forward (s) | forward + backward (s) |")
    print("|---|---|---|---|")
    for name, status in funknn_fast.backends().items():
        if not status.available or (name == "triton" and not torch.cuda.is_available()):
            print(f"| {name} | unavailable: {status.reason} | | |")
            continue

        def forward(name=name):
            with torch.no_grad():
                return funknn_fast.patch_sample(image, coords, step, backend=name)

        def forward_backward(name=name):
            img, crd = image.clone().requires_grad_(), coords.clone().requires_grad_()
            funknn_fast.patch_sample(img, crd, step, backend=name).sum().backward()

        error = (forward().double() - reference).abs().max().item()
        print(f"| {name} | {error:.1e} | {timed(forward):.4f} | {timed(forward_backward):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
