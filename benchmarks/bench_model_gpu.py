"""GPU benchmark of FunkNN and LIIF end to end: queries/s of whole renders (issue 14, item 9).

Workload: a synthetic smooth 3 x 256 x 256 image (no data files), rendered at x2 (512 x 512) and
x4 (1024 x 1024), and a 512 x 512 image rendered at 4096 x 4096. Models: the shipped FunkNN-CNN
(``funknn_cnn_continuous``), LIIF-EDSR (``liif_edsr``) and, when present, the shipped lattice
FunkNN through the shared-grid renderer (``superres.grid_render``). Methods:

* ``funknn <precision>``: ``models.gpu_inference.FunkNNInference`` (chunks of 131072 queries,
  CUDA graphs) through ``superres.inference.render``, in float32 (TF32 off), tf32 and bfloat16;
* ``funknn eager``: the model itself through ``render`` (the CPU-tuned path: 512-query
  micro-chunks), the baseline, at x2 only;
* ``liif-edsr <precision>``: ``LIIFInference`` through ``render_liif`` (one encoding, chunks);
* ``lattice grid``: ``render_grid`` of the lattice FunkNN (float32).

A time is the median of ``--repeats`` whole renders (coordinates, encoding and output included;
CUDA events) after a warm-up render (graph capture, Triton compilation). Queries/s = output pixels
/ time. Error: each precision's render against the same method's float32 render (max abs and
PSNR, intensities in [0, 1]). Results are rewritten after every row (``--log-dir``: also JSON).

Targets on the record: FunkNN-CNN >= 20 M queries/s end to end on an H100/H200 in bfloat16, and
faster than LIIF-EDSR on the same card.

Usage:
  python benchmarks/bench_model_gpu.py [--repeats N] [--log-dir DIR]
  python benchmarks/bench_model_gpu.py --dry-run   # CPU, tiny sizes, Triton interpreted
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import gpu_bench_common as common
from gpu_bench_common import HERE

PRECISIONS = ("float32", "tf32", "bfloat16")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input side of the x2/x4 renders")
    parser.add_argument("--large", type=int, default=4096, help="side of the large render")
    parser.add_argument("--large-input", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=131072)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time FunkNN bfloat16 with torch.compile of the chunk")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU tensors, tiny sizes, Triton through its interpreter")
    parser.add_argument("--output", default=None,
                        help="default benchmarks/results/model_gpu.md (none in a dry run)")
    parser.add_argument("--log-dir", help="also write the table and a JSON of the results here")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.size, args.large, args.large_input, args.chunk, args.repeats = 8, 32, 8, 256, 1
    elif args.output is None:
        args.output = str(HERE / "results" / "model_gpu.md")
    return args


def smooth_image(size: int, device, seed: int = 0):
    """A smooth deterministic 3 x size x size image in [0, 1]."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, size // 16), max(2, size // 16), generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                            align_corners=False)
    texture = 0.05 * torch.rand(1, 3, size, size, generator=generator)
    return (image + texture).clamp(0, 1).to(device)


def timed_render(render_fn, repeats: int, device) -> tuple[float, object]:
    """(median seconds, last output) of ``render_fn()`` after one warm-up call."""
    import torch

    out = render_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            out = render_fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            out = render_fn()
            times.append(time.perf_counter() - begin)
    return statistics.median(times), out


def error_cells(out, reference) -> dict:
    import torch

    if reference is None or out is reference:
        return {}
    diff = out.double() - reference.double()
    mse = float(diff.square().mean())
    psnr = float(10 * torch.log10(torch.tensor(1.0 / mse))) if mse > 0 else float("inf")
    return {"max_abs_error": float(diff.abs().max()), "psnr_vs_float32": psnr}


def render_table(payload: dict) -> str:
    lines = ["| model / method | render | output pixels | ms | M queries/s | max abs error vs "
             "float32 | PSNR vs float32 (dB) |", "|---|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['render']} | | failed: {row['error']} | | | |")
            continue
        error = f"{row['max_abs_error']:.2e}" if "max_abs_error" in row else ""
        psnr = f"{row['psnr_vs_float32']:.1f}" if "psnr_vs_float32" in row else ""
        lines.append(f"| {row['method']} | {row['render']} | {row['pixels']} | "
                     f"{row['seconds'] * 1e3:.1f} | {row['pixels'] / row['seconds'] / 1e6:.2f} "
                     f"| {error} | {psnr} |")
    return "\n".join(lines)


def render_section(args, device_name, payload, command) -> tuple[str, str]:
    table = render_table(payload)
    section = [
        "## FunkNN and LIIF end to end on GPU (issue 14)",
        "",
        common.environment_line(command, device_name),
        f"Renders of a synthetic smooth 3 x {args.size} x {args.size} image at x2 and x4, and of "
        f"a {args.large_input} x {args.large_input} one at {args.large} x {args.large}; median "
        f"of {args.repeats} whole renders (CUDA events) after a warm-up render. FunkNN and LIIF "
        f"through models.gpu_inference (chunks of {args.chunk} queries, CUDA graphs); 'eager' is "
        "the model's own path (512-query micro-chunks). Errors: against the same method in "
        "float32 (TF32 off). Targets: FunkNN-CNN >= 20 M queries/s in bfloat16 on an H100/H200, "
        "and above LIIF-EDSR.",
        "",
        table,
    ]
    section += common.failure_notes(payload["failures"])
    return "\n".join(section) + "\n", table


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.select_device(args)
    if device is None:
        return 2
    log = common.Log()
    common.log_backends(log)

    from funknn_fast.models.checkpoint import WEIGHTS_DIR, load_model
    from funknn_fast.models.gpu_inference import FunkNNInference, LIIFInference
    from funknn_fast.models.liif import load_liif
    from funknn_fast.superres.inference import render, render_liif

    command = common.command_line("bench_model_gpu.py", argv)
    payload = {"rows": [], "failures": [], "log": log.lines}

    def write(_=None):
        section, _table = render_section(args, common.device_name(device), payload, command)
        common.write_results(args, section, "model_gpu.md", "bench_model_gpu.json", payload)

    funknn = load_model(WEIGHTS_DIR / "funknn_cnn_continuous.safetensors").to(device).eval()
    liif = common.guarded("LIIF-EDSR weights",
                          lambda: load_liif(WEIGHTS_DIR / "liif_edsr.safetensors"), log,
                          payload["failures"])
    liif = liif.to(device).eval() if liif is not None else None
    graphs = device.type == "cuda"
    small = smooth_image(args.size, device)
    large = smooth_image(args.large_input, device, seed=1)
    renders = [("x2", small, 2 * args.size), ("x4", small, 4 * args.size),
               (f"{args.large}^2", large, args.large)]

    def measure(method, label, side, render_fn, reference=None):
        def run():
            seconds, out = timed_render(render_fn, args.repeats, device)
            row = {"method": method, "render": label, "pixels": side * side,
                   "seconds": seconds, **error_cells(out, reference)}
            log(f"  {method:24s} {label:8s} {seconds * 1e3:9.1f} ms  "
                f"{side * side / seconds / 1e6:8.2f} M queries/s  "
                + " ".join(f"{k}={v:.3g}" for k, v in row.items() if k.endswith(("error",
                                                                                  "float32"))))
            payload["rows"].append(row)
            return out

        out = common.guarded(f"{method} {label}", run, log, payload["failures"])
        if out is None:
            payload["rows"].append({"method": method, "render": label,
                                    "error": payload["failures"][-1][:120]})
        write()
        return out

    for label, image, side in renders:
        big = label.endswith("^2")
        references = {}
        for precision in PRECISIONS if not big else ("float32", "bfloat16"):
            engine = FunkNNInference(funknn, chunk=args.chunk, precision=precision,
                                     graphs=graphs)
            out = measure(f"funknn {precision}", label, side,
                          lambda e=engine, i=image, s=side: render(e, i[0], size=(s, s),
                                                                   chunk=e.chunk),
                          references.get("funknn"))
            if precision == "float32":
                references["funknn"] = out
        if args.compile and not big:
            engine = FunkNNInference(funknn, chunk=args.chunk, precision="bfloat16",
                                     graphs=graphs, compile=True)
            measure("funknn bfloat16 compiled", label, side,
                    lambda e=engine, i=image, s=side: render(e, i[0], size=(s, s),
                                                             chunk=e.chunk),
                    references.get("funknn"))
        if label == "x2":
            measure("funknn eager", label, side,
                    lambda i=image, s=side: render(funknn, i[0], size=(s, s), chunk=16384),
                    references.get("funknn"))
        if liif is not None:
            for precision in PRECISIONS if not big else ("float32", "bfloat16"):
                engine = LIIFInference(liif, chunk=args.chunk, precision=precision,
                                       graphs=graphs)
                out = measure(f"liif-edsr {precision}", label, side,
                              lambda e=engine, i=image, s=side: render_liif(
                                  e, i[0], size=(s, s), chunk=e.chunk),
                              references.get("liif"))
                if precision == "float32":
                    references["liif"] = out
        if not big:
            measure_grid(args, measure, label, image, side, device, log, payload)
    section, table = render_section(args, common.device_name(device), payload, command)
    print(table)
    return common.exit_status(payload["failures"], log)


def measure_grid(args, measure, label, image, side, device, log, payload) -> None:
    """The lattice FunkNN through the shared-grid renderer, when both exist in this tree."""
    import torch

    try:
        from funknn_fast.models.checkpoint import WEIGHTS_DIR, load_model
        from funknn_fast.superres.grid_render import render_grid
    except ImportError:
        return
    path = WEIGHTS_DIR / "funknn_lattice_bundled.safetensors"
    if not path.exists():
        return
    model = common.guarded("lattice weights", lambda: load_model(path), log, payload["failures"])
    if model is None:
        return
    model = model.to(device).eval()

    def run():
        with torch.inference_mode():
            return render_grid(model, image, (side, side))

    measure("lattice grid float32", label, side, run)


if __name__ == "__main__":
    sys.exit(main())
