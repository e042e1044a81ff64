"""CPU benchmark: value + gradient + Laplacian of the CNN FunkNN at 32,768 queries (issue 5).

Workload: FunkNN CNN (paper architecture, 3 channels, ReLU, p = 9, random weights, eval mode,
float32), 8 images of 3 x 64 x 64, 4,096 random queries per image (32,768 in all). Every method
returns value (B, Q, C), gradient (B, Q, C, 2) and Laplacian (B, Q, C) in normalised coordinates,
processing the queries in the same chunks (``--chunk`` queries per image at a time):

* ``jets``: ``funknn_fast.derivatives.funknn_derivatives(order="laplacian")``: one patch-jets op
  (C++) and four stacked forward passes of the network, under ``torch.no_grad``;
* ``autograd (funknn_fast op)``: ``model(coords, image)`` (C++ ``patch_sample``, fused CNN),
  then for every channel autograd of the output w.r.t. the coordinates with ``create_graph`` and,
  for each axis, autograd of that gradient again (double backward; the op's exact second
  derivatives);
* ``autograd (grid_sample)``: the same with the patches from ``F.grid_sample(bicubic,
  reflection)`` (PyTorch's a = -0.75 cubic: a speed baseline, its values differ slightly).

Each method runs in its own subprocess (``--case``). Wall and CPU time: median of ``--repeats``
runs after a warm-up on a few queries. The jets run all 32,768 queries; the autograd baselines,
much slower, run the first ``--baseline-queries`` queries of every image (same chunks, so the
same per-chunk work) and their times are scaled linearly to the full workload.
Peak memory: growth of the subprocess's maximum resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, Linux KiB) over its value after the inputs,
the model and the warm-up exist (torch's CPU allocator keeps no peak statistics), measured in a
second subprocess per method over ``--memory-queries`` queries per image with glibc's mmap
threshold fixed at 1 MiB (``MALLOC_MMAP_THRESHOLD_``): with glibc's default dynamic threshold,
freed chunk-sized buffers stay in the heap and the RSS then grows with fragmentation and with the
number of chunks run, not with the method's live memory. The per-chunk peak does not depend on
the number of chunks.
The jets results are checked against the op-autograd results of the same run.

Prints a Markdown table and writes benchmarks/results/derivatives.md.
Usage: python benchmarks/bench_derivatives.py [--repeats N] [--chunk Q] [--quick] [--no-write]
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
import tempfile
import time

from funknn_fast.atomic_files import write_text_atomically

HERE = pathlib.Path(__file__).resolve().parent
METHODS = ["jets", "autograd (funknn_fast op)", "autograd (grid_sample)"]
MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def make_workload(batch: int, queries: int, size: int, seed: int = 0):
    import torch

    from funknn_fast.models.funknn import FunkNN

    torch.manual_seed(seed)
    model = FunkNN(channels=3, variant="cnn", activation="relu").eval()
    with torch.no_grad():
        model.step.copy_(torch.tensor([0.9, 1.1]))
    generator = torch.Generator().manual_seed(seed + 1)
    image = torch.rand(batch, 3, size, size, generator=generator)
    coords = torch.rand(batch, queries // batch, 2, generator=generator) * 2 - 1
    return model, image, coords


def jets_method(model, image, coords):
    import torch

    from funknn_fast.derivatives import funknn_derivatives

    with torch.no_grad():
        d = funknn_derivatives(model, coords, image, order="laplacian", chunk=None)
    return d.value, d.gradient, d.laplacian


def autograd_method(forward):
    import torch

    def run(model, image, coords):
        coords = coords.detach().clone().requires_grad_()
        out = forward(model, image, coords)
        gradients, laplacians = [], []
        for c in range(out.shape[-1]):
            (grad,) = torch.autograd.grad(out[..., c].sum(), coords, create_graph=True)
            lap = 0
            for axis in range(2):
                (second,) = torch.autograd.grad(grad[..., axis].sum(), coords, retain_graph=True)
                lap = lap + second[..., axis]
            gradients.append(grad.detach())
            laplacians.append(lap)
        return out.detach(), torch.stack(gradients, dim=2), torch.stack(laplacians, dim=2)

    return run


def op_forward(model, image, coords):
    return model(coords, image)


def grid_sample_forward(model, image, coords):
    from patch_sample_baselines import grid_sample_patches

    patches = grid_sample_patches(image, coords, model.step, model.patch_size)
    batch, queries, channels, p, _ = patches.shape
    flat = patches.reshape(batch * queries, channels, p, p)
    return (model.network(flat) + flat[:, :, p // 2, p // 2]).reshape(batch, queries, channels)


def method_fn(method: str):
    if method == "jets":
        return jets_method
    if method == "autograd (funknn_fast op)":
        return autograd_method(op_forward)
    return autograd_method(grid_sample_forward)


def run_case(method: str, args: argparse.Namespace, save: str | None) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    batch, queries, size = args.workload
    model, image, coords = make_workload(batch, queries, size)
    if args.memory_queries:
        coords = coords[:, :args.memory_queries]
    elif method != "jets":
        coords = coords[:, :args.baseline_queries]
    for p in model.parameters():
        p.requires_grad_(False)
    fn = method_fn(method)

    def chunked():
        pieces = [fn(model, image, coords[:, s:s + args.chunk])
                  for s in range(0, coords.shape[1], args.chunk)]
        return [torch.cat(parts, dim=1) for parts in zip(*pieces, strict=True)]

    fn(model, image, coords[:, :4])  # warm-up
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        results = chunked()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib
    if save:
        torch.save([r.detach() for r in results], save)
    times.sort()
    cpu_times.sort()
    scale = queries / (batch * coords.shape[1])
    return {"seconds": times[len(times) // 2], "all_seconds": times, "peak_mib": peak_kib / 1024,
            "base_mib": base_kib / 1024, "queries": batch * coords.shape[1],
            "full_seconds": times[len(times) // 2] * scale,
            "full_cpu_seconds": cpu_times[len(cpu_times) // 2] * scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=32, help="queries per image per chunk")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: CPU time stays meaningful on a shared machine)")
    parser.add_argument("--baseline-queries", type=int, default=4096,
                        help="queries per image timed for the autograd baselines (4096: all; "
                             "fewer are scaled linearly, to save time)")
    parser.add_argument("--quick", action="store_true", help="small workload (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    parser.add_argument("--memory-queries", type=int, default=64,
                        help="queries per image of the memory pass")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--memory-case", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.workload = (2, 256, 16) if args.quick else (8, 32768, 64)
    if args.quick:
        args.baseline_queries = min(args.baseline_queries, 64)
    if args.case:
        if not args.memory_case:
            args.memory_queries = 0
        print(json.dumps(run_case(args.case, args, args.save)))
        return

    import torch

    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    load_before = os.getloadavg()
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            save = os.path.join(tmp, f"{len(results)}.pt")
            cmd = [sys.executable, __file__, "--case", method, "--save", save,
                   "--repeats", str(args.repeats), "--chunk", str(args.chunk),
                   "--threads", str(args.threads),
                   "--baseline-queries", str(args.baseline_queries)]
            cmd += ["--quick"] if args.quick else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            results[method] = json.loads(out.strip().splitlines()[-1])
            outputs[method] = torch.load(save)
            print(f"  {method:27s} {results[method]}", file=sys.stderr, flush=True)
            memory_cmd = cmd[:4] + cmd[6:] + ["--memory-case", "--memory-queries",
                                               str(args.memory_queries)]
            out = subprocess.run(memory_cmd, check=True, capture_output=True, text=True,
                                 env=dict(env, MALLOC_MMAP_THRESHOLD_=str(1 << 20))).stdout
            results[method]["peak_mib"] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
            print(f"  {method:27s} memory pass: {results[method]['peak_mib']:.1f} MiB",
                  file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    reference = outputs["autograd (funknn_fast op)"]
    subset = reference[0].shape[1]
    ours = [t[:, :subset] for t in outputs["jets"]]
    agreement = [float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
                 for a, b in zip(ours, reference, strict=True)]
    jets = results["jets"]
    lines = [
        "| method | queries timed | wall time (s) | wall time, all queries (s) | jets speed-up "
        "(wall) | CPU time, all queries (s) | jets speed-up (CPU) | peak memory growth (MiB) "
        "| jets memory / method's |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        r = results[method]
        lines.append(
            f"| {method} | {r['queries']} | {r['seconds']:.2f} | {r['full_seconds']:.1f} | "
            f"{r['full_seconds'] / jets['full_seconds']:.1f}x | {r['full_cpu_seconds']:.1f} | "
            f"{r['full_cpu_seconds'] / jets['full_cpu_seconds']:.1f}x | {r['peak_mib']:.0f} | "
            f"{jets['peak_mib'] / max(r['peak_mib'], 1e-9):.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    batch, queries, size = args.workload
    command = (f"python benchmarks/bench_derivatives.py --repeats {args.repeats} "
               f"--chunk {args.chunk} --threads {args.threads} "
               f"--baseline-queries {args.baseline_queries}")
    section = (
        "## Derivatives of FunkNN: value + gradient + Laplacian (issue 5)\n\n"
        f"Command: `{command}`; machine: {MACHINE}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torch threads = {args.threads}; date: "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load average before "
        f"{load_before[0]:.2f} / after {load_after[0]:.2f} (the machine was shared with other "
        "jobs).\n"
        f"Workload: CNN FunkNN (ReLU, p = 9, float32, eval), {batch} images of 3 x {size} x "
        f"{size}, "
        f"{queries} random queries in all, {args.chunk} queries per image per chunk for every "
        "method; value (B, Q, C), gradient (B, Q, C, 2) and Laplacian (B, Q, C). Time: median of "
        f"{args.repeats} run(s) after a warm-up, one subprocess per method; the autograd "
        f"baselines run the first {args.baseline_queries} queries of every image and their time "
        "is scaled linearly to all queries (identical chunks, so identical per-chunk work). "
        "CPU time (user + system of the subprocess, ``time.process_time``) is less sensitive to "
        "the other jobs on the machine than wall time. "
        "Peak memory (a separate pass per method over the first "
        f"{args.memory_queries} queries of every image, i.e. {args.memory_queries // args.chunk} "
        "chunks, with glibc's mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_) so that "
        "freed buffers leave the resident set instead of staying as heap fragmentation): "
        "growth of the subprocess's max RSS (getrusage ru_maxrss) over its value once inputs, "
        "model and warm-up exist. Jets vs op autograd on the common queries, max relative "
        f"difference (value, gradient, Laplacian): {agreement[0]:.1e}, {agreement[1]:.1e}, "
        f"{agreement[2]:.1e} (float32).\n\n"
        + table + "\n"
    )
    if args.quick or args.no_write:
        return
    target = HERE / "results" / "derivatives.md"
    target.parent.mkdir(exist_ok=True)
    write_text_atomically(target, section)


if __name__ == "__main__":
    main()
