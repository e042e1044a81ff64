"""Speed of the shared-computation grid engine (issue 13) against per-query FunkNN and LIIF.

    python benchmarks/bench_grid_render.py --threads 1 --model funknn_lattice_photos

Sections, all in one process with the same torch threads, inputs from skimage's astronaut
(512 x 512; the 256 x 256 and 64 x 64 inputs are its Pillow-bicubic downscales):
  1. a 4096 x 4096 render from the 512 x 512 photograph (``inference.render``, lattice variant:
     shared engine), wall and process CPU time, growth of the process's peak RSS;
  2. x4 from 256 x 256 (1,048,576 queries): the lattice variant shared, LIIF-EDSR
     (``render_liif``, projected path, its default chunk); the per-query paths (lattice
     per query, the paper's cnn) on the 64 x 64 input at x4 (65,536 queries) to keep the run
     short, reported as queries/s;
  3. ``funknn superres`` on the 256 x 256 photograph at x4 as a subprocess (start-up, reading,
     rendering, writing the PNG), wall time.
Multiply-adds per output pixel: the lattice engine's plan (``grid_render.share_plan``), the
per-query networks' counts, and LIIF's counted with ``torch.utils.flop_counter`` on the 64 x 64
render (matmuls and convolutions; FLOPs / 2). Writes ``benchmarks/results/<--name>.md``
(default grid_render); ``--only-4096`` runs section 1 alone.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from funknn_fast.atomic_files import write_text_atomically

ROOT = Path(__file__).resolve().parent.parent
MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def timed(fn):
    """(result, wall s, process CPU s) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from funknn_fast.models.checkpoint import WEIGHTS_DIR, load_model, resolve_weights
    from funknn_fast.models.lattice import per_query_macs
    from funknn_fast.models.liif import load_liif
    from funknn_fast.superres.data import load_bundled_photo, save_image
    from funknn_fast.superres.degradations import degrade
    from funknn_fast.superres.grid_render import share_plan
    from funknn_fast.superres.inference import render, render_liif

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="funknn_lattice_photos", help="lattice weights name")
    parser.add_argument("--skip-4096", action="store_true", help="leave out section 1")
    parser.add_argument("--only-4096", action="store_true", help="section 1 only")
    parser.add_argument("--name", default="grid_render", help="results file stem")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lattice = load_model(resolve_weights(args.model))
    cnn = load_model(WEIGHTS_DIR / "funknn_cnn_continuous.safetensors")
    liif = load_liif(WEIGHTS_DIR / "liif_edsr.safetensors")
    photo = load_bundled_photo("astronaut")
    mid = degrade(photo, (256, 256), "bicubic").clamp(0, 1)
    small = degrade(photo, (64, 64), "bicubic").clamp(0, 1)
    loads = []
    lines = ["## Shared-computation grid rendering: speed (issue 13)", "",
             f"Command: `python benchmarks/bench_grid_render.py {' '.join(argv or sys.argv[1:])}`"
             f"; machine: {MACHINE}, Python {platform.python_version()}, torch "
             f"{torch.__version__}, {args.threads} torch thread(s); date: "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; lattice "
             f"weights {args.model}. The machine was shared with other sessions' jobs: load "
             "averages are given beside each measurement; CPU time (this process) is the "
             "steadier number.", ""]

    if not args.skip_4096:
        plan = share_plan(lattice, (512, 512), (4096, 4096))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _, wall, cpu = timed(lambda: render(lattice, photo, size=(4096, 4096)))
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        loads.append(os.getloadavg()[0])
        lines += ["### 4096 x 4096 from 512 x 512", "",
                  "| method | wall | CPU time | queries/s (wall) | MACs per output pixel | "
                  "peak RSS growth | load (1 min) |", "|---|---|---|---|---|---|---|",
                  f"| lattice, shared engine | {wall:.1f} s | {cpu:.1f} s | "
                  f"{4096 * 4096 / wall:,.0f} | {plan.macs_per_pixel / 1e6:.3f} M | "
                  f"{growth / 1024:.0f} MiB (the output alone is 192 MiB) | {loads[-1]:.2f} |",
                  "| cnn per query (issue 4 measurement, benchmarks/results/render_4096.md) | "
                  "31 min 19 s | - | 8,900 | 4.838 M | 1.17 GiB max RSS | quiet |", ""]

    if args.only_4096:
        return _write(args.name, lines)
    rows = []
    plan4 = share_plan(lattice, (256, 256), (1024, 1024))
    _, wall, cpu = timed(lambda: render(lattice, mid, scale=4.0))
    loads.append(os.getloadavg()[0])
    rows.append(("lattice, shared engine", "256 -> 1024", 1024 * 1024, wall, cpu,
                 plan4.macs_per_pixel, loads[-1]))
    _, wall, cpu = timed(lambda: render_liif(liif, mid, scale=4.0))
    loads.append(os.getloadavg()[0])
    with FlopCounterMode(display=False) as counter:
        render_liif(liif, small, scale=4.0)
    liif_macs = counter.get_total_flops() / 2 / (256 * 256)
    rows.append(("LIIF-EDSR (render_liif, projected)", "256 -> 1024", 1024 * 1024, wall, cpu,
                 liif_macs, loads[-1]))
    _, wall, cpu = timed(lambda: render(lattice, small, scale=4.0, shared=False))
    loads.append(os.getloadavg()[0])
    rows.append(("lattice, per query (--no-shared)", "64 -> 256", 256 * 256, wall, cpu,
                 per_query_macs(3, 9), loads[-1]))
    _, wall, cpu = timed(lambda: render(cnn, small, scale=4.0))
    loads.append(os.getloadavg()[0])
    rows.append(("cnn (paper), per query", "64 -> 256", 256 * 256, wall, cpu, 4.838e6,
                 loads[-1]))
    lattice_rate = rows[0][2] / rows[0][3]
    lines += ["### x4: queries per second in the same run", "",
              "| method | input -> output | queries | wall | CPU time | queries/s (wall) | "
              "queries/s (CPU) | vs LIIF-EDSR (CPU) | MACs per output pixel | load (1 min) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    liif_cpu_rate = rows[1][2] / rows[1][4]
    for name, sizes, queries, wall, cpu, macs, load in rows:
        lines.append(f"| {name} | {sizes} | {queries:,} | {wall:.2f} s | {cpu:.2f} s | "
                     f"{queries / wall:,.0f} | {queries / cpu:,.0f} | "
                     f"{queries / cpu / liif_cpu_rate:.2f}x | {macs / 1e6:.3f} M | {load:.2f} |")
    lines += ["", f"Lattice shared vs LIIF-EDSR by wall time: "
              f"{lattice_rate / (rows[1][2] / rows[1][3]):.2f}x.", ""]

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "photo256.png", Path(folder) / "photo1024.png"
        save_image(mid, source)
        command = [sys.executable, "-m", "funknn_fast", "superres", str(source), "-o",
                   str(target), "--scale", "4", "--model", args.model, "--threads",
                   str(args.threads)]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - began
        if done.returncode != 0 or not target.is_file():
            raise SystemExit(f"funknn superres failed: {done.stderr}")
    loads.append(os.getloadavg()[0])
    lines += ["### `funknn superres` end to end, 256 x 256 photograph at x4", "",
              "| command | wall (start-up, read, render, write) | load (1 min) |", "|---|---|---|",
              f"| `funknn superres photo256.png -o photo1024.png --scale 4 --model {args.model}"
              f" --threads {args.threads}` | {wall:.1f} s | {loads[-1]:.2f} |",
              "| the same with the shipped cnn before issue 13 (issue statement) | 280 s | - |"]
    return _write(args.name, lines)


def _write(name: str, lines: list[str]) -> int:
    write_text_atomically(ROOT / "benchmarks" / "results" / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
