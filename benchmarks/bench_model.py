"""Inference throughput (queries/s) of the full FunkNN CNN model: fused path vs a naive pipeline.

Both render the same random queries of a random 64 x 64 RGB image with the same weights, under
``torch.inference_mode``, ``chunk`` queries per call:
  * naive: a grid of p x p patch positions per query, ``F.grid_sample(mode="bicubic",
    padding_mode="reflection", align_corners=False)`` patches, then the ``nn.Conv2d`` /
    ``nn.Linear`` modules (``FunkNN.patch_network``, NCHW) and the centre sample (the public
    code's pipeline);
  * fused: ``FunkNN.forward`` = ``patch_sample`` (C++ Keys-cubic kernels) + the fused
    channels-last GEMM network (``funknn_fast.models.fused_cnn``).
The two differ only in the interpolation kernel (grid_sample's bicubic is a = -0.75, FunkNN's
Keys a = -0.5); the network outputs on identical patches are checked equal first.

    python benchmarks/bench_model.py --threads 1 --queries 16384

Prints a Markdown table and writes it to benchmarks/results/bench_model.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.models.funknn import FunkNN

warnings.filterwarnings("ignore", message="Using padding='same'")
MACHINE = "2-core AMD EPYC (Zen 2) CPU"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_model.md"


def naive_forward(model: FunkNN, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """grid_sample bicubic patches + nn.Conv2d modules; (B, Q, 2), (B, C, h, w) -> (B, Q, C)."""
    batch, queries, _ = coords.shape
    channels, height, width = image.shape[1:]
    p = model.patch_size
    offsets = torch.arange(p, dtype=coords.dtype) - (p - 1) / 2
    step = model.step.detach()
    dx = offsets * step[0] * 2 / width
    dy = offsets * step[1] * 2 / height
    grid_x = coords[..., 0, None, None] + dx.view(1, 1, 1, p)
    grid_y = coords[..., 1, None, None] + dy.view(1, 1, p, 1)
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)  # (B, Q, p, p, 2)
    samples = F.grid_sample(image, grid.reshape(batch, queries * p, p, 2), mode="bicubic",
                            padding_mode="reflection", align_corners=False)
    patches = samples.view(batch, channels, queries, p, p).permute(0, 2, 1, 3, 4)
    flat = patches.reshape(batch * queries, channels, p, p)
    out = model.patch_network(flat) + flat[:, :, p // 2, p // 2]
    return out.view(batch, queries, channels)


def throughput(fn, coords: torch.Tensor, chunk: int, repeats: int) -> float:
    """Best queries/s over ``repeats`` passes over all queries, ``chunk`` per call."""
    best = float("inf")
    with torch.inference_mode():
        fn(coords[:, :chunk])
        for _ in range(repeats):
            began = time.perf_counter()
            for start in range(0, coords.shape[1], chunk):
                fn(coords[:, start : start + chunk])
            best = min(best, time.perf_counter() - began)
    return coords.shape[1] / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queries", type=int, default=16384)
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="free text added to the results file")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = FunkNN(3, "cnn").eval()
    image = torch.rand(1, 3, 64, 64)
    coords = torch.rand(1, args.queries, 2) * 2 - 1
    with torch.inference_mode():
        patches = torch.rand(64, 3, 9, 9)
        from funknn_fast.models.fused_cnn import fused_cnn_patch_network

        error = (fused_cnn_patch_network(model, patches) - model.patch_network(patches)).abs().max()
    rows = []
    for chunk in args.chunks:
        naive = throughput(lambda c: naive_forward(model, c, image), coords, chunk, args.repeats)
        fused = throughput(lambda c: model(c, image), coords, chunk, args.repeats)
        rows.append((chunk, naive, fused))
    best_naive = max(r[1] for r in rows)
    lines = ["| chunk (queries) | naive: grid_sample + nn.Conv2d (q/s) | fused FunkNN (q/s) | "
             "fused / naive (same chunk) | fused / best naive |",
             "|---|---|---|---|---|"]
    for chunk, naive, fused in rows:
        lines.append(f"| {chunk} | {naive:,.0f} | {fused:,.0f} | {fused / naive:.2f}x | "
                     f"{fused / best_naive:.2f}x |")
    table = "\n".join(lines)
    print(table)
    print(f"max |fused - module| network output on identical patches: {float(error):.2e}")
    if not args.no_write:
        command = "python benchmarks/bench_model.py " + " ".join(shlex.quote(a) for a in argv
                                                                  or sys.argv[1:])
        text = "\n".join([
            "## FunkNN CNN inference throughput (CPU)",
            "",
            f"Command: `{command}`  ",
            f"Machine: {MACHINE} ({platform.machine()}), torch {torch.__version__}, "
            f"{args.threads} thread(s); date "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}.  ",
            f"{args.queries} random queries on a 64x64 RGB image, 140,933-parameter CNN "
            "(about 5.1 M multiply-adds per query), inference_mode, best of "
            f"{args.repeats} passes. {args.note}",
            "",
            table,
            "",
            f"Network outputs of both paths on identical patches agree to {float(error):.1e}.",
            "",
        ])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(RESULTS, text)
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
