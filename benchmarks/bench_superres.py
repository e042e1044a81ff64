"""End-to-end super-resolution: bicubic, FunkNN, LIIF-EDSR and LIIF-140K (issue 6).

Measures, in one run on this machine:

1. Parameters and multiply-adds (MACs) per query, counted by ``torch.utils.flop_counter`` on the
   evaluation path itself (matmuls and convolutions; the encoder of LIIF is amortised over the
   queries of an x4 output).
2. PSNR (dB, RGB, whole crop, output clamped to [0, 1]) at x2, x3, x4, x6, x8 on the held-out
   bundled photographs (``funknn_fast.superres.data.TEST_PHOTOS``): a centre crop of ``--crop``
   pixels (a multiple of 24) is the ground truth, its low resolution is
   ``funknn_fast.superres.data.downscale``
   (antialiased bilinear, the training degradation), every output pixel is queried at its
   centre. Only models with trained weights get a PSNR; the others are reported as not
   available (no numbers are made up for untrained models).
3. Throughput at x4 (a 64 x 64 low resolution rendered at 256 x 256, 65,536 queries; LIIF in
   chunks of ``--chunk`` queries, FunkNN in chunks of ``--funknn-chunk``, each model's default):
   queries per second and achieved GFLOP/s, best of ``--repeats`` runs,
   models interleaved. LIIF is evaluated the efficient way (encoder and unfolded features once
   per image, reused by every chunk), the projected way (the code part of the first MLP layer
   folded into a 3 x 3 convolution run once per image) and, for reference, the public code's
   way (everything recomputed per chunk).
4. Throughput against the number of queries (random coordinates, x4 cell, encoding included).
5. Peak memory of a 1M-query output (x4, 256 x 256 -> 1024 x 1024): growth of the max RSS of a
   fresh subprocess per model over its inputs and model.

Speed does not depend on the weights: untrained models are timed too. The PSNR protocol is that of
``funknn_fast.superres.evaluation`` (same crop, degradation and clamping). Writes
``benchmarks/results/liif.md`` (all sections) and the plots ``docs/superres_psnr.png`` and
``docs/superres_throughput.png``.

Usage: python benchmarks/bench_superres.py [--quick] [--skip-quality] [--skip-memory]
       [--repeats N] [--chunk N] [--funknn-chunk N] [--crop N] [--threads N]
       [--memory-side N] [--no-write]
       [--funknn-weights P] [--liif-weights P] [--liif140k-weights P]
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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.models.checkpoint import DEFAULT_WEIGHTS, load_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.liif import (
    LIIF,
    LIIF_140K,
    LIIF_EDSR,
    cell_for_size,
    load_liif,
)
from funknn_fast.superres.data import TEST_PHOTOS, downscale, load_photos
from funknn_fast.superres.inference import DEFAULT_CHUNK, render, render_liif
from funknn_fast.superres.metrics import psnr

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
WEIGHTS = ROOT / "funknn_fast" / "weights"
MACHINE = "2-core AMD EPYC (Zen 2) CPU"
SCALES = (2, 3, 4, 6, 8)
MODEL_NAMES = ("FunkNN", "LIIF-EDSR", "LIIF-140K")


SPEED_TITLE = "FunkNN against LIIF: throughput and memory (issue 6)"


@dataclass
class Loaded:
    """A model and where its weights came from (``trained`` False: random initialisation)."""

    name: str
    model: torch.nn.Module
    trained: bool
    source: str
    training: str = "-"


def load_models(args: argparse.Namespace, names=MODEL_NAMES) -> dict[str, Loaded]:
    """FunkNN, LIIF-EDSR and LIIF-140K (or ``names``), trained when their weights exist."""
    torch.manual_seed(0)
    models = {}
    funknn_path = pathlib.Path(args.funknn_weights)
    if "FunkNN" not in names:
        pass
    elif funknn_path.with_suffix(".json").is_file():
        models["FunkNN"] = Loaded("FunkNN", load_model(funknn_path), True, _rel(funknn_path),
                                  training_record(funknn_path.with_suffix(".json")))
    else:
        models["FunkNN"] = Loaded("FunkNN", FunkNN().eval(), False, "untrained")
    for name, path, config in (("LIIF-EDSR", args.liif_weights, LIIF_EDSR),
                               ("LIIF-140K", args.liif140k_weights, LIIF_140K)):
        if name not in names:
            continue
        path = pathlib.Path(path)
        if path.is_file():
            models[name] = Loaded(name, load_liif(path).eval(), True, _rel(path),
                                  training_record(path.with_suffix(".json")))
        else:
            models[name] = Loaded(name, LIIF(config).eval(), False, "untrained")
    return models


def training_record(json_path: pathlib.Path) -> str:
    """Steps, budget and learning rate from the JSON written next to a model's weights."""
    try:
        info = json.loads(json_path.read_text())
        train = info["train"]
        steps = info.get("steps_done", info.get("step"))
        seconds = float(info["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return "-"
    clock = "CPU" if info.get("clock") == "cpu" else "wall"
    threads = train.get("threads")
    if threads is None and "--threads 1" in info.get("command", ""):
        threads = 1
    on = f", {threads} thread" if threads else ""
    return (f"{steps} steps of {train['batch_size']} crops x {train['queries']} queries, "
            f"{seconds / 60:.1f} min ({clock}{on}), Adam lr {train['lr']:g} cosine to "
            f"{train.get('lr_min', 0):g}")


def _rel(path: pathlib.Path) -> str:
    """The weights path, relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(fn: Callable[[], object]) -> int:
    """Floating point operations (2 per multiply-add) of the matmuls and convolutions of fn."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops()


def macs_per_query(models: dict[str, Loaded], scale: int = 4) -> dict[str, dict[str, float]]:
    """Multiply-adds per query at ``scale`` (LIIF: MLP part, encoder part amortised)."""
    torch.manual_seed(1)
    side, queries = 16, 1024
    image = torch.rand(1, 3, side, side)
    coords = torch.rand(1, queries, 2) * 2 - 1
    out = {}
    funknn = models["FunkNN"].model
    out["FunkNN"] = {"query": count_flops(lambda: funknn(coords, image)) / 2 / queries,
                     "encoder": 0.0}
    for name in ("LIIF-EDSR", "LIIF-140K"):
        model = models[name].model
        for project in (False, True):
            encode = count_flops(lambda m=model, p=project: m.encode(image, project=p))
            features = model.encode(image, project=project)
            query = count_flops(lambda m=model, f=features: m.query(f, coords, 0.1))
            key = name + (" projected" if project else "")
            out[key] = {"query": query / 2 / queries,
                        "encoder": encode / 2 / (side * side) / scale**2}
    return out


def bicubic(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PyTorch bicubic (a = -0.75, align_corners=False)."""
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False)


def renderers(models: dict[str, Loaded], chunk: int, funknn_chunk: int) -> dict[str, Callable]:
    """name -> fn(low (1, C, h, w), size) -> (1, C, H, W), each model's efficient evaluation."""
    out = {"bicubic": bicubic}
    if "FunkNN" in models:
        funknn = models["FunkNN"].model
        out["FunkNN"] = lambda low, size: render(funknn, low, size=size, chunk=funknn_chunk)
    for name in ("LIIF-EDSR", "LIIF-140K"):
        if name not in models:
            continue
        model = models[name].model
        out[name] = lambda low, size, m=model: render_liif(m, low, size=size, chunk=chunk)
    return out


def quality(models: dict[str, Loaded], crop: int, chunk: int,
            funknn_chunk: int) -> dict[str, dict[int, float]]:
    """Mean PSNR over the held-out photos, per method and scale (trained models only)."""
    photos = []
    for photo in load_photos(TEST_PHOTOS):
        height, width = photo.shape[1:]
        top, left = (height - crop) // 2, (width - crop) // 2
        photos.append(photo[None, :, top : top + crop, left : left + crop].contiguous())
    methods = {k: v for k, v in renderers(models, chunk, funknn_chunk).items()
               if k == "bicubic" or models[k].trained}
    table: dict[str, dict[int, float]] = {name: {} for name in methods}
    for scale in SCALES:
        for name, fn in methods.items():
            values = []
            for truth in photos:
                low = downscale(truth, (crop // scale, crop // scale))
                with torch.inference_mode():
                    estimate = fn(low, (crop, crop)).clamp(0, 1)
                values.append(psnr(estimate, truth))
            table[name][scale] = sum(values) / len(values)
            print(f"  PSNR x{scale} {name}: {table[name][scale]:.2f} dB", file=sys.stderr)
    return table


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed_methods(models: dict[str, Loaded], chunk: int,
                  funknn_chunk: int) -> dict[str, Callable]:
    """name -> fn(low, coords (1, Q, 2), cell) -> (1, Q, C), full evaluation incl. encoding."""
    funknn = models["FunkNN"].model

    def funknn_fn(low, coords, cell):
        return torch.cat([funknn(coords[:, s : s + funknn_chunk], low)
                          for s in range(0, coords.shape[1], funknn_chunk)], 1)

    def liif_fn(model, project):
        return lambda low, coords, cell: model.evaluate(coords, low, cell, chunk_size=chunk,
                                                        project=project)

    def liif_per_chunk(model):
        return lambda low, coords, cell: torch.cat(
            [model(coords[:, s : s + chunk], low, cell) for s in range(0, coords.shape[1], chunk)],
            1)

    edsr, small = models["LIIF-EDSR"].model, models["LIIF-140K"].model
    return {
        "FunkNN": funknn_fn,
        "LIIF-EDSR (efficient)": liif_fn(edsr, False),
        "LIIF-EDSR (projected)": liif_fn(edsr, True),
        "LIIF-EDSR (per-chunk, public code)": liif_per_chunk(edsr),
        "LIIF-140K (efficient)": liif_fn(small, False),
        "LIIF-140K (projected)": liif_fn(small, True),
    }


def throughput_x4(models, chunk: int, funknn_chunk: int, repeats: int,
                  side: int) -> dict[str, dict[str, float]]:
    """Rendering a side x side low resolution at x4: seconds, queries/s, GFLOP/s."""
    photo = load_photos(TEST_PHOTOS[:1])[0][None]
    low = downscale(photo, (side, side))
    size = (4 * side, 4 * side)
    queries = size[0] * size[1]
    ys = (2 * torch.arange(size[0], dtype=torch.float64) + 1) / size[0] - 1
    grid_y, grid_x = torch.meshgrid(ys, ys, indexing="ij")
    coords = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1).float()[None]
    cell = cell_for_size(*size)
    methods = {"bicubic": lambda low, coords, cell: bicubic(low, size)}
    methods.update(speed_methods(models, chunk, funknn_chunk))
    # The counted run is also the warm-up.
    flops = {name: count_flops(lambda f=fn: f(low, coords, cell)) for name, fn in methods.items()}
    times = {name: float("inf") for name in methods}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, fn in methods.items():
                times[name] = min(times[name], _best_time(lambda f=fn: f(low, coords, cell), 1))
    out = {}
    for name in methods:
        out[name] = {"seconds": times[name], "queries_per_s": queries / times[name],
                     "gflops": flops[name] / times[name] / 1e9, "flops": flops[name],
                     "queries": queries}
        print(f"  x4 {name}: {out[name]}", file=sys.stderr)
    return out


def throughput_sweep(models, chunk: int, funknn_chunk: int, repeats: int, side: int,
                     counts: list[int]) -> dict[str, dict[int, float]]:
    """Queries per second against the number of random queries (x4 cell, encoding included)."""
    generator = torch.Generator().manual_seed(2)
    low = torch.rand(1, 3, side, side, generator=generator)
    cell = cell_for_size(4 * side, 4 * side)
    methods = {k: v for k, v in speed_methods(models, chunk, funknn_chunk).items()
               if "public" not in k}
    out: dict[str, dict[int, float]] = {name: {} for name in methods}
    with torch.inference_mode():
        for fn in methods.values():  # warm-up
            fn(low, torch.rand(1, counts[0], 2, generator=generator) * 2 - 1, cell)
        for count in counts:
            coords = torch.rand(1, count, 2, generator=generator) * 2 - 1
            for name, fn in methods.items():
                seconds = _best_time(lambda f=fn, c=coords: f(low, c, cell), repeats)
                out[name][count] = count / seconds
            print(f"  sweep Q={count}: " + ", ".join(f"{k} {v[count]:.0f}/s"
                                                     for k, v in out.items()), file=sys.stderr)
    return out


def _status_kib(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_case(args: argparse.Namespace) -> dict[str, float]:
    """In a fresh process: peak RSS growth of rendering side x side at x4 with one method.

    The growth is the peak resident set (VmHWM, reset through /proc/self/clear_refs just before
    the render) minus the resident set before it (model, input and libraries loaded).
    """
    name, side = args.memory_case, args.memory_side
    models = load_models(args, names=[name] if name in MODEL_NAMES else [])
    low = torch.rand(1, 3, side, side)
    fn = renderers(models, args.chunk, args.funknn_chunk)[name]
    with torch.inference_mode():
        fn(low[:, :, :8, :8], (32, 32))  # load kernels outside the measurement
    before = _status_kib("VmRSS")
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        peak_field = "VmHWM"
    except OSError:
        before, peak_field = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, None
    start = time.perf_counter()
    with torch.inference_mode():
        fn(low, (4 * side, 4 * side))
    seconds = time.perf_counter() - start
    peak = (_status_kib(peak_field) if peak_field
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {"peak_mib": (peak - before) / 1024, "seconds": seconds,
            "queries": (4 * side) ** 2}


def memory(names: list[str], side: int, args: argparse.Namespace) -> dict[str, dict]:
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--memory-case", name, "--memory-side", str(side),
               "--chunk", str(args.chunk), "--funknn-chunk", str(args.funknn_chunk),
               "--threads", str(args.threads),
               "--funknn-weights", args.funknn_weights, "--liif-weights", args.liif_weights,
               "--liif140k-weights", args.liif140k_weights]
        result = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        out[name] = json.loads(result.strip().splitlines()[-1])
        print(f"  memory {name}: {out[name]}", file=sys.stderr)
    return out


def _atomic_write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text)


def plot_psnr(table: dict[str, dict[int, float]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for name, values in table.items():
        axis.plot(list(values), list(values.values()), marker="o", label=name)
    axis.set_xlabel("scale factor")
    axis.set_ylabel("PSNR (dB), held-out photos")
    axis.set_xticks(list(SCALES))
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title("Super-resolution quality (models without trained weights omitted)",
                   fontsize=8)
    _save_figure(figure, path)


def plot_throughput(sweep: dict[str, dict[int, float]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 4))
    for name, values in sweep.items():
        axis.loglog(list(values), list(values.values()), marker="o", label=name)
    axis.set_xlabel("queries per image")
    axis.set_ylabel("queries per second (encoding included)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7)
    axis.set_title(f"Throughput on a {MACHINE}", fontsize=8)
    _save_figure(figure, path)


def _save_figure(figure, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    figure.tight_layout()
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def _header(title: str, command: str, threads: int) -> str:
    load = os.getloadavg()
    return (
        f"## {title}\n\n"
        f"Command: `{command}`; machine: {MACHINE}, Python {platform.python_version()}, torch "
        f"{torch.__version__}, torch threads: {threads}; "
        f"date: {datetime.date.today().isoformat()}; "
        f"load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (the machine was "
        "shared with other jobs while measuring when the load exceeds the thread count).\n"
    )


def quality_section(models, macs, table, crop, command, threads) -> str:
    lines = ["| model | parameters | weights | training | MACs per query at x4 (MLP/CNN + "
             "amortised encoder) |", "|---|---|---|---|---|"]
    for name in MODEL_NAMES:
        entry = models[name]
        keys = [k for k in macs if k == name or k.startswith(name + " ")]
        cost = "; ".join(f"{k.replace(name, '').strip() or 'efficient'}: "
                         f"{(macs[k]['query'] + macs[k]['encoder']) / 1e6:.3f} M "
                         f"({macs[k]['query'] / 1e6:.3f} + {macs[k]['encoder'] / 1e6:.3f})"
                         for k in keys)
        lines.append(f"| {name} | {count_parameters(entry.model):,} | {entry.source} | "
                     f"{entry.training} | {cost} |")
    section = [_header("End-to-end super-resolution on held-out photographs (issue 6)",
                       command, threads), "\n".join(lines), ""]
    if table is None:
        section.append("PSNR: not measured in this run (`--skip-quality`).")
    else:
        header = "| method | " + " | ".join(f"x{s}" for s in SCALES) + " |"
        rows = [header, "|---|" + "---|" * len(SCALES)]
        for name in ("bicubic", *MODEL_NAMES):
            if name in table:
                rows.append(f"| {name} | " + " | ".join(f"{table[name][s]:.2f}"
                                                      for s in SCALES) + " |")
            else:
                rows.append(f"| {name} | " + " | ".join("n/a" for _ in SCALES) + " |")
        section += [
            f"PSNR (dB, RGB) averaged over {', '.join(TEST_PHOTOS)} (held out from training): "
            f"centre crop {crop} x {crop}, low resolution by antialiased bilinear downscaling, "
            "output clamped to [0, 1], no border shaved. n/a: no trained weights for that "
            "model in this checkout (see `benchmarks/train_liif.sh`).", "", "\n".join(rows), "",
            "![PSNR against scale](docs/superres_psnr.png)",
        ]
    return "\n".join(section) + "\n"


def speed_section(x4, sweep, mem, macs, chunk, funknn_chunk, side, mem_side, command,
                  threads) -> str:
    lines = ["| method | seconds | queries/s | GFLOP counted | achieved GFLOP/s | "
             "queries/s vs FunkNN |", "|---|---|---|---|---|---|"]
    base = x4["FunkNN"]["queries_per_s"]
    for name, row in x4.items():
        lines.append(f"| {name} | {row['seconds']:.3f} | {row['queries_per_s']:,.0f} | "
                     f"{row['flops'] / 1e9:.1f} | {row['gflops']:.1f} | "
                     f"{row['queries_per_s'] / base:.2f}x |")
    funknn, liif = x4["FunkNN"], x4["LIIF-EDSR (efficient)"]
    projected = x4["LIIF-EDSR (projected)"]
    ratio = funknn["queries_per_s"] / liif["queries_per_s"]
    funknn_macs = funknn["flops"] / 2 / funknn["queries"]
    liif_macs = liif["flops"] / 2 / liif["queries"]
    verdict = "met" if ratio >= 1 else "not met"
    needed = funknn_macs / liif_macs * liif["gflops"]
    analysis = (
        f"Acceptance (FunkNN queries/s >= LIIF-EDSR's at x4, both efficient): **{verdict}**, "
        f"FunkNN / LIIF-EDSR (efficient) = {ratio:.2f}x, FunkNN / LIIF-EDSR (projected) = "
        f"{funknn['queries_per_s'] / projected['queries_per_s']:.2f}x. "
        f"Arithmetic: FunkNN needs {funknn_macs / 1e6:.2f} M multiply-adds per query, LIIF-EDSR "
        f"{liif_macs / 1e6:.2f} M (encoder amortised at x4; "
        f"{projected['flops'] / 2 / projected['queries'] / 1e6:.2f} M projected), i.e. "
        f"{funknn_macs / liif_macs:.1f}x more. At LIIF's achieved {liif['gflops']:.1f} GFLOP/s, "
        f"FunkNN would need {needed:.1f} GFLOP/s to match it (it achieves "
        f"{funknn['gflops']:.1f}). "
        + (f"FunkNN already runs at a higher arithmetic rate than LIIF-EDSR "
           f"({funknn['gflops']:.1f} against {liif['gflops']:.1f} GFLOP/s), so the gap is the "
           "multiply-adds alone"
           if funknn["gflops"] >= liif["gflops"] else
           "Two factors: the multiply-adds and the arithmetic rate (FunkNN's GEMMs have "
           "K = 256 and only 64 output columns, LIIF's MLP K = 580 or 256 and 256 columns)")
        + ": most of FunkNN's are the three 64-channel 2 x 2 convolutions at 9 x 9 before the "
        f"first pooling, about 78%. Even at equal GFLOP/s FunkNN stays "
        f"{funknn_macs / liif_macs:.1f}x behind: matching LIIF needs a cheaper per-patch "
        "network (fewer multiply-adds per query, e.g. a first pooling before the 64-channel "
        "convolutions), not faster kernels."
    )
    section = [_header(SPEED_TITLE, command, threads),
               f"Rendering a {side} x {side} low-resolution photo at x4 ({4 * side} x {4 * side}"
               f" = {(4 * side) ** 2:,} queries) in chunks of {chunk} queries for LIIF and "
               f"{funknn_chunk} for FunkNN (each model's default); best of the "
               "repeats, methods interleaved; FLOPs counted by torch.utils.flop_counter "
               "(matmuls and convolutions only; 2 per multiply-add). Speed does not depend on "
               "the weights.", "", "\n".join(lines), "", analysis, ""]
    if sweep:
        counts = sorted(next(iter(sweep.values())))
        rows = ["| method | " + " | ".join(f"Q = {c:,}" for c in counts) + " |",
                "|---|" + "---|" * len(counts)]
        for name, values in sweep.items():
            rows.append(f"| {name} | " + " | ".join(f"{values[c]:,.0f}" for c in counts) + " |")
        section += [f"Queries per second against the number of random queries on a {side} x "
                    f"{side} image (x4 cell, encoding included, best of the repeats):", "",
                    "\n".join(rows), "", "![throughput](docs/superres_throughput.png)", ""]
    if mem:
        rows = ["| method | queries | seconds | queries/s | peak memory growth (MiB) |",
                "|---|---|---|---|---|"]
        for name, row in mem.items():
            rows.append(f"| {name} | {row['queries']:,} | {row['seconds']:.1f} | "
                        f"{row['queries'] / row['seconds']:,.0f} | {row['peak_mib']:.0f} |")
        section += [f"Peak memory of one {4 * mem_side} x {4 * mem_side} output (x4 from "
                    f"{mem_side} x {mem_side}), chunks of {chunk} for LIIF and "
                    f"{funknn_chunk} for FunkNN (FunkNN: "
                    "`funknn_fast.superres.inference.render`; LIIF: `render_liif`, projected): "
                    "growth of "
                    "the peak resident set of a fresh process per method over its model and "
                    "input (one run each; memory grows with the chunk size).", "",
                    "\n".join(rows), ""]
    else:
        section.append("Peak memory: not measured in this run (`--skip-memory`).")
    return "\n".join(section) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads (smoke test)")
    parser.add_argument("--skip-quality", action="store_true", help="no PSNR table")
    parser.add_argument("--skip-memory", action="store_true", help="no 1M-query memory runs")
    parser.add_argument("--quality-only", action="store_true",
                        help="PSNR table only; keeps the speed section of the results file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=16384, help="queries per LIIF chunk")
    parser.add_argument("--funknn-chunk", type=int, default=DEFAULT_CHUNK,
                        help="queries per FunkNN chunk (default: render's default)")
    parser.add_argument("--crop", type=int, default=240, help="PSNR crop (multiple of 24)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--funknn-weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--liif-weights", default=str(WEIGHTS / "liif_edsr.safetensors"))
    parser.add_argument("--liif140k-weights", default=str(WEIGHTS / "liif_140k.safetensors"))
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--memory-side", type=int, default=256,
                        help="low-resolution side of the x4 memory run (256: 1M queries)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_case:
        print(json.dumps(memory_case(args)))
        return
    if args.crop % 24 or args.crop < 24:
        parser.error(f"--crop must be a positive multiple of 24, got {args.crop}")
    quick = args.quick
    repeats = 1 if quick else args.repeats
    side, mem_side = (16, 32) if quick else (64, args.memory_side)
    crop = 48 if quick else args.crop
    counts = [256, 1024] if quick else [1024, 4096, 16384, 65536]

    models = load_models(args)
    macs = macs_per_query(models)
    table = None if args.skip_quality else quality(models, crop, args.chunk, args.funknn_chunk)
    command = "python benchmarks/bench_superres.py" + "".join(f" {a}" for a in sys.argv[1:])
    if args.quality_only:
        first = quality_section(models, macs, table, crop, command, args.threads)
        print(first)
        if not (quick or args.no_write):
            previous = (RESULTS / "liif.md").read_text() if (RESULTS / "liif.md").is_file() else ""
            marker = previous.find("## " + SPEED_TITLE)
            rest = previous[marker:] if marker >= 0 else ""
            if table is not None:
                plot_psnr(table, DOCS / "superres_psnr.png")
            _atomic_write(RESULTS / "liif.md", first + ("\n" + rest if rest else ""))
        return
    x4 = throughput_x4(models, args.chunk, args.funknn_chunk, repeats, side)
    sweep = throughput_sweep(models, args.chunk, args.funknn_chunk, repeats, side, counts)
    mem = None if args.skip_memory else memory(["bicubic", *MODEL_NAMES], mem_side, args)
    first = quality_section(models, macs, table, crop, command, args.threads)
    second = speed_section(x4, sweep, mem, macs, args.chunk, args.funknn_chunk, side, mem_side,
                           command, args.threads)
    print(first)
    print(second)
    if quick or args.no_write:
        return
    if table is not None:
        plot_psnr(table, DOCS / "superres_psnr.png")
    plot_throughput(sweep, DOCS / "superres_throughput.png")
    _atomic_write(RESULTS / "liif.md", first + "\n" + second)


if __name__ == "__main__":
    main()
