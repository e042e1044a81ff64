"""CPU benchmark of ``patch_sample`` against PyTorch's grid_sample path and the 16-tap gather.

Workload (issue 2): 8 images of 3 x 64 x 64, 32,768 queries in all, p = 9, float32, 2 threads.
Modes: forward (no grad); forward + backward (image and coords); second order (grad of
<w, out> w.r.t. coords with create_graph, then grad of <v, grad> w.r.t. coords and image).
Every (method, mode) runs in its own subprocess so that its peak memory (max RSS growth over the
inputs) is its own. Prints a Markdown table and writes it to benchmarks/results/patch_sample_cpu.md.

Usage: python benchmarks/bench_patch_sample.py [--repeats N] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

from funknn_fast.atomic_files import write_text_atomically

HERE = pathlib.Path(__file__).resolve().parent
METHODS = ["funknn_fast cpu", "grid_sample", "16-tap gather"]
MODES = ["forward", "forward+backward", "second order"]


def make_inputs(batch: int, queries: int, size: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=generator)
    coords = torch.rand(batch, queries // batch, 2, generator=generator) * 2 - 1
    step = torch.tensor([1.0, 1.0])
    return image, coords, step


def method_fn(method: str):
    from patch_sample_baselines import gather_patches, grid_sample_patches

    import funknn_fast

    if method == "funknn_fast cpu":
        return lambda i, c, s, p: funknn_fast.patch_sample(i, c, s, p, "reflection", backend="cpu")
    if method == "grid_sample":
        return grid_sample_patches
    return gather_patches


def run_case(method: str, mode: str, repeats: int, batch: int, queries: int, size: int) -> dict:
    import torch

    torch.set_num_threads(2)
    fn = method_fn(method)
    image, coords, step = make_inputs(batch, queries, size)
    patch = 9
    weights = torch.rand(batch, coords.shape[1], 3, patch, patch)
    direction = torch.rand_like(coords)

    def once():
        if mode == "forward":
            with torch.no_grad():
                fn(image, coords, step, patch)
        elif mode == "forward+backward":
            img = image.clone().requires_grad_()
            crd = coords.clone().requires_grad_()
            fn(img, crd, step, patch).backward(weights)
        else:
            img = image.clone().requires_grad_()
            crd = coords.clone().requires_grad_()
            out = fn(img, crd, step, patch)
            (grad_coords,) = torch.autograd.grad((out * weights).sum(), crd, create_graph=True)
            torch.autograd.grad((grad_coords * direction).sum(), (crd, img))

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    once()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    times.sort()
    return {"seconds": times[len(times) // 2], "peak_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small workload, 1 repeat (smoke)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch, queries, size = (2, 512, 16) if args.quick else (8, 32768, 64)
    repeats = 1 if args.quick else args.repeats
    if args.case:
        method, mode = args.case.split("|")
        print(json.dumps(run_case(method, mode, repeats, batch, queries, size)))
        return

    results: dict[tuple[str, str], dict] = {}
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for mode in MODES:
        for method in METHODS:
            cmd = [
                sys.executable,
                __file__,
                "--case",
                f"{method}|{mode}",
                "--repeats",
                str(repeats),
            ]
            if args.quick:
                cmd.append("--quick")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            results[(method, mode)] = json.loads(out.strip().splitlines()[-1])
            print(f"  {mode:17s} {method:16s} {results[(method, mode)]}", file=sys.stderr)

    lines = [
        "| mode | funknn_fast cpu (s) | grid_sample (s) | 16-tap gather (s) "
        "| speed-up vs grid_sample | speed-up vs gather "
        "| peak MiB funknn / grid_sample / gather |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        ours, grid, gather = (results[(m, mode)] for m in METHODS)
        t_ours = ours["seconds"]
        lines.append(
            f"| {mode} | {ours['seconds']:.4f} | {grid['seconds']:.4f} | {gather['seconds']:.4f} | "
            f"{grid['seconds'] / t_ours:.1f}x | {gather['seconds'] / t_ours:.1f}x | "
            f"{ours['peak_mib']:.0f} / {grid['peak_mib']:.0f} / {gather['peak_mib']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.quick or args.no_write:
        return
    load = os.getloadavg()
    section = (
        "## patch_sample on CPU (issue 2)\n\n"
        f"Command: `python benchmarks/bench_patch_sample.py --repeats {repeats}`; "
        "machine: 2-core AMD EPYC (Zen 2) CPU, "
        f"Python {platform.python_version()}, torch threads = 2; "
        f"date: {datetime.date.today().isoformat()}; load average at the end: "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.\n"
        f"Workload: {batch} images of 3 x {size} x {size}, {queries} queries in all, p = 9, "
        "float32, reflection padding, median of the repeats after one warm-up. Second order: grad "
        "of <w, out> w.r.t. coords with create_graph, then grad of <v, that> w.r.t. coords and "
        "image. Peak MiB: growth of the process's max RSS over the inputs (one subprocess per "
        "cell).\n\n" + table + "\n"
    )
    target = HERE / "results" / "patch_sample_cpu.md"
    target.parent.mkdir(exist_ok=True)
    write_text_atomically(target, section)


if __name__ == "__main__":
    main()
