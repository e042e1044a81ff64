"""GPU benchmark of ``patch_sample``: Triton and CUDA backends against F.grid_sample bicubic.

Workload (issue 3): 8 images of 3 x 128 x 128, 2^20 queries in all, p = 9, reflection padding,
float32 and bfloat16 images (coords and step in float32 for funknn_fast; grid_sample needs its
grid in the image dtype). Modes, as in benchmarks/bench_patch_sample.py: forward (no grad);
forward + backward (image and coords); second order (grad of <w, out> w.r.t. coords with
create_graph, then grad of <v, that> w.r.t. coords and image). Times are medians of CUDA-event
timings after a warm-up (which also compiles the Triton kernels).

Bandwidth: the forward's bytes moved (output written + image and coords read; the output
dominates) over its time, against a device-to-device copy of the output's size (read + write bytes
over time). Errors: max |result - float64 evaluation| of each method on a subset of the queries;
funknn_fast is measured against the float64 reference of its contract, grid_sample against its
own float64 run.

Before timing, a validation (no pytest needed) checks every backend against the float64 reference
(forward, first and second order, three paddings, odd shapes) and the low-precision error bound;
the script exits with status 1 if any check fails.

Usage:
  python benchmarks/bench_patch_sample_gpu.py [--repeats N] [--sweep-forward] [--log-dir DIR]
  python benchmarks/bench_patch_sample_gpu.py --dry-run   # CPU, tiny sizes, Triton interpreted
Writes the Markdown section to benchmarks/results/patch_sample_gpu.md (and DIR, if given).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
MODES = ("forward", "forward+backward", "second order")
METHODS = ("triton", "cuda", "grid_sample")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1 << 20, help="queries in all")
    parser.add_argument("--patch", type=int, default=9)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--error-queries", type=int, default=4096,
                        help="queries (in all) of the float64 error measurement")
    parser.add_argument("--sweep-forward", action="store_true",
                        help="also time the Triton forward under a few launch configurations")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU tensors, tiny sizes, Triton through its interpreter")
    parser.add_argument("--output", default=str(HERE / "results" / "patch_sample_gpu.md"))
    parser.add_argument("--log-dir", help="also write the table and a JSON of the results here")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch, args.size, args.queries, args.patch, args.repeats = 2, 8, 4, 3, 1
        args.error_queries = 4
    return args


# ------------------------------------------------------------------------------------ helpers


def write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Timer:
    """Median wall time of a callable: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn, repeats: int) -> float:
        fn()  # warm-up: compiles Triton kernels, fills caches
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start = self.torch.cuda.Event(enable_timing=True)
                end = self.torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
        return statistics.median(times)


def method_fn(method: str):
    """(image, coords, step, p) -> (B, Q, C, p, p) for a method name."""
    import funknn_fast

    if method == "grid_sample":
        sys.path.insert(0, str(HERE))
        from patch_sample_baselines import grid_sample_patches

        return grid_sample_patches
    return lambda i, c, s, p: funknn_fast.patch_sample(i, c, s, p, "reflection", backend=method)


def method_inputs(method, image, coords, step):
    """grid_sample needs its grid (hence coords and step) in the image dtype."""
    if method == "grid_sample":
        return image, coords.to(image.dtype), step.to(image.dtype)
    return image, coords, step


def unavailable_reason(method: str, device) -> str | None:
    if method == "grid_sample":
        return None
    from funknn_fast.backends import backends

    status = backends()[method]
    if not status.available:
        return status.reason
    if method == "cuda" and device.type != "cuda":
        return "needs CUDA tensors"
    return None


# ------------------------------------------------------------------------------------ validation


def validate(device, log) -> list[str]:
    """Backends vs the float64 reference; returns the failures (empty when all pass)."""
    import torch

    from funknn_fast.reference import patch_sample_reference

    failures = []
    cases = [(2, 3, 37, 50, 200, 9, 1.5), (2, 2, 3, 1, 5, 9, 30.0), (1, 1, 1, 2, 3, 1, 4.0)]
    if device.type != "cuda":
        cases = [(1, 3, 5, 7, 3, 3, 1.5), (1, 1, 1, 2, 2, 1, 4.0)]

    def check(label, got, want, tol):
        got, want = got.detach().double(), want.detach()
        scale = 1.0 + float(want.abs().max()) if want.numel() else 1.0
        error = float((got - want).abs().max()) if want.numel() else 0.0
        ok = error <= tol * scale
        log(f"  {'ok  ' if ok else 'FAIL'} {label}: max error {error:.3g} (tol {tol * scale:.3g})")
        if not ok:
            failures.append(label)

    for method in ("triton", "cuda"):
        reason = unavailable_reason(method, device)
        if reason is not None:
            log(f"  skip {method}: {reason}")
            continue
        fn = method_fn(method)
        for case in cases:
            batch, channels, height, width, queries, p, spread = case
            generator = torch.Generator().manual_seed(7)
            base = [
                torch.randn(batch, channels, height, width, generator=generator,
                            dtype=torch.float64),
                (torch.rand(batch, queries, 2, generator=generator, dtype=torch.float64) * 2 - 1)
                * spread,
                torch.tensor([0.85, 1.3], dtype=torch.float64),
            ]
            for dtype in (torch.float64, torch.float32):
                tol, tol2 = (1e-11, 1e-11) if dtype == torch.float64 else (2e-5, 3e-4)
                for padding in ("zeros", "border", "reflection"):
                    def run(i, c, s, padding=padding, p=p, method=method):
                        import funknn_fast

                        return funknn_fast.patch_sample(i, c, s, p, padding, backend=method)

                    inputs = [t.to(device, dtype).requires_grad_() for t in base]
                    refs = [t.to(device).requires_grad_() for t in base]
                    out = run(*inputs)
                    ref = patch_sample_reference(*refs, p, padding)
                    label = f"{method} {dtype} {padding} {case}"
                    check(f"{label} forward", out, ref, tol)
                    if padding != "reflection" and dtype != torch.float64:
                        continue
                    w = torch.randn(out.shape, generator=generator, dtype=torch.float64)
                    w = w.to(device)
                    g1 = torch.autograd.grad(out, inputs, w.to(dtype), create_graph=True)
                    r1 = torch.autograd.grad(ref, refs, w, create_graph=True)
                    v = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(device)
                         for t in base]
                    g2 = torch.autograd.grad(sum((a * b.to(dtype)).sum() for a, b in zip(g1, v)),
                                             inputs)
                    r2 = torch.autograd.grad(sum((a * b).sum() for a, b in zip(r1, v)), refs)
                    for name, a, b in zip(("image", "coords", "step"), g1, r1):
                        check(f"{label} d/d{name}", a, b, tol2)
                    for name, a, b in zip(("image", "coords", "step"), g2, r2):
                        check(f"{label} second order d/d{name}", a, b, tol2)
        del fn
    return failures


# ------------------------------------------------------------------------------------ timing


def make_workload(args, device, dtype):
    import torch

    generator = torch.Generator().manual_seed(0)
    per_image = args.queries // args.batch
    image = torch.rand(args.batch, args.channels, args.size, args.size, generator=generator)
    coords = torch.rand(args.batch, per_image, 2, generator=generator) * 2 - 1
    step = torch.tensor([1.0, 1.0])
    return image.to(device, dtype), coords.to(device), step.to(device)


def time_modes(method, args, device, dtype, timer, log) -> dict:
    import torch

    fn = method_fn(method)
    image, coords, step = method_inputs(method, *make_workload(args, device, dtype))
    p = args.patch
    out_shape = (image.shape[0], coords.shape[1], image.shape[1], p, p)
    generator = torch.Generator().manual_seed(1)
    weights = torch.rand(out_shape, generator=generator).to(device, dtype)
    direction = torch.rand(coords.shape, generator=generator).to(device, coords.dtype)

    def forward():
        with torch.no_grad():
            fn(image, coords, step, p)

    def forward_backward():
        img = image.detach().requires_grad_()
        crd = coords.detach().requires_grad_()
        fn(img, crd, step, p).backward(weights)

    def second_order():
        img = image.detach().requires_grad_()
        crd = coords.detach().requires_grad_()
        out = fn(img, crd, step, p)
        (grad_coords,) = torch.autograd.grad((out * weights).sum(), crd, create_graph=True)
        torch.autograd.grad((grad_coords * direction).sum(), (crd, img))

    results = {}
    for mode, body in zip(MODES, (forward, forward_backward, second_order), strict=True):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        try:
            seconds = timer(body, args.repeats)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if device.type == "cuda" \
                else float("nan")
            results[mode] = {"seconds": seconds, "peak_gib": peak}
            log(f"  {method:11s} {str(dtype):15s} {mode:17s} {seconds * 1e3:9.3f} ms  "
                f"peak {peak:.2f} GiB")
        except (RuntimeError, NotImplementedError) as error:  # e.g. missing double backward, OOM
            first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
            results[mode] = {"error": f"{type(error).__name__}: {first_line}"}
            log(f"  {method:11s} {str(dtype):15s} {mode:17s} failed: {results[mode]['error']}")
    if "seconds" in results.get("forward", {}):
        moved = (out_shape[0] * out_shape[1] * out_shape[2] * p * p * image.element_size()
                 + image.numel() * image.element_size() + coords.numel() * coords.element_size())
        results["forward"]["bytes"] = moved
        results["forward"]["gbps"] = moved / results["forward"]["seconds"] / 1e9
    return results


def copy_bandwidth(nbytes: int, device, timer, repeats: int) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written over time)."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timer(lambda: dst.copy_(src), repeats)
    return 2 * nbytes / seconds / 1e9


def errors_vs_float64(args, device, dtype) -> dict:
    """Max abs error of each method in ``dtype`` against float64, on a subset of the queries."""
    import torch

    from funknn_fast.reference import patch_sample_reference

    sys.path.insert(0, str(HERE))
    from patch_sample_baselines import grid_sample_patches

    image, coords, step = (t.double() for t in make_workload(args, device, torch.float64))
    per_image = max(1, args.error_queries // args.batch)
    coords = coords[:, :per_image].contiguous()
    p = args.patch
    out = {}
    reference = patch_sample_reference(image, coords, step, p, "reflection")
    for method in ("triton", "cuda"):
        if unavailable_reason(method, device) is None:
            got = method_fn(method)(image.to(dtype), coords.float(), step.float(), p)
            out[method] = float((got.double() - reference).abs().max())
    low = grid_sample_patches(image.to(dtype), coords.to(dtype), step.to(dtype), p)
    out["grid_sample"] = float((low.double() - grid_sample_patches(image, coords, step, p))
                               .abs().max())
    return out


def sweep_forward(args, device, timer, log) -> list[tuple[str, float]]:
    import torch

    rows = []
    if unavailable_reason("triton", device) is not None:
        return rows
    image, coords, step = make_workload(args, device, torch.float32)
    fn = method_fn("triton")
    previous = os.environ.get("FUNKNN_TRITON_FORWARD_CONFIG")
    try:
        for config in ("128,4", "256,8", "256,4", "512,8", "1024,8"):
            os.environ["FUNKNN_TRITON_FORWARD_CONFIG"] = config
            with torch.no_grad():
                seconds = timer(lambda: fn(image, coords, step, args.patch), args.repeats)
            rows.append((config, seconds))
            log(f"  triton forward float32 config {config}: {seconds * 1e3:.3f} ms")
    finally:
        if previous is None:
            os.environ.pop("FUNKNN_TRITON_FORWARD_CONFIG", None)
        else:
            os.environ["FUNKNN_TRITON_FORWARD_CONFIG"] = previous
    return rows


# ------------------------------------------------------------------------------------ report


def cell_ms(result: dict) -> str:
    return f"{result['seconds'] * 1e3:.3f}" if "seconds" in result else "n/a"


def speedup(base: dict, ours: dict) -> str:
    if "seconds" in base and "seconds" in ours:
        return f"{base['seconds'] / ours['seconds']:.1f}x"
    return "n/a"


def render(args, device_name, results, copy_gbps, errors, sweep, notes, command) -> str:
    lines = [
        "| dtype | method | forward (ms) | fwd + bwd (ms) | second order (ms) | forward GB/s "
        "(% of copy) | speed-up vs grid_sample (fwd / fwd+bwd / 2nd) | peak GiB (2nd) "
        "| max error vs float64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dtype, per_method in results.items():
        grid = per_method.get("grid_sample", {})
        for method, modes in per_method.items():
            if "unavailable" in modes:
                lines.append(f"| {dtype} | {method} | unavailable: {modes['unavailable']} "
                             "| | | | | | |")
                continue
            fwd = modes.get("forward", {})
            bandwidth = (f"{fwd['gbps']:.0f} ({100 * fwd['gbps'] / copy_gbps:.0f}%)"
                         if "gbps" in fwd else "n/a")
            ups = " / ".join(speedup(grid.get(m, {}), modes.get(m, {})) for m in MODES)
            if method == "grid_sample":
                ups = "1.0x (baseline)"
            second = modes.get("second order", {})
            peak = f"{second['peak_gib']:.2f}" if "peak_gib" in second else "n/a"
            error = errors.get(dtype, {}).get(method)
            error_cell = f"{error:.2e}" if error is not None else "n/a"
            lines.append(
                f"| {dtype} | {method} | {cell_ms(fwd)} | {cell_ms(modes.get(MODES[1], {}))} | "
                f"{cell_ms(second)} | {bandwidth} | {ups} | {peak} | {error_cell} |"
            )
    table = "\n".join(lines)
    failed = [f"{d} {m} {mode}: {r['error']}" for d, pm in results.items() for m, modes in
              pm.items() for mode, r in modes.items() if isinstance(r, dict) and "error" in r]
    import torch

    triton_version = "none"
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        pass
    section = [
        "## patch_sample on GPU (issue 3)",
        "",
        f"Command: `{command}`; device: {device_name}; torch {torch.__version__}, "
        f"triton {triton_version}, Python {platform.python_version()}; "
        f"date: {datetime.date.today().isoformat()}.",
        f"Workload: {args.batch} images of {args.channels} x {args.size} x {args.size}, "
        f"{args.queries} queries in all, p = {args.patch}, reflection padding; median of "
        f"{args.repeats} timings (CUDA events) after a warm-up. funknn_fast takes float32 coords "
        "and step with a bfloat16 image; grid_sample (bicubic, a = -0.75, on an explicit patch "
        "grid) takes its grid in the image dtype. Second order: grad of <w, out> w.r.t. coords "
        "with create_graph, then grad of <v, that> w.r.t. coords and image. Forward GB/s: "
        "(output + image + coords bytes) / time, against a device-to-device copy of the "
        f"output's size: {copy_gbps:.0f} GB/s (read + write). Max error: on "
        f"{args.error_queries} queries, each method in the row's dtype against float64 (its "
        "own float64 run for grid_sample).",
        "",
        table,
    ]
    if sweep:
        timings = ", ".join(f"{c}: {s * 1e3:.3f} ms" for c, s in sweep)
        section += ["", "Triton forward launch configurations (float32; "
                    f"FUNKNN_TRITON_FORWARD_CONFIG = elements per program, warps): {timings}."]
    if failed:
        section += ["", "Cells marked n/a failed: " + "; ".join(failed) + "."]
    section += [f"{note}" for note in notes]
    return "\n".join(section) + "\n", table


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before funknn_fast imports Triton
    import torch

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run for a CPU check of this script", file=sys.stderr)
        return 2
    log_lines: list[str] = []

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        log_lines.append(message)

    from funknn_fast.backends import backends

    for name, status in backends().items():
        log(f"backend {name}: {'available' if status.available else 'unavailable'} "
            f"({status.reason})")
    failures: list[str] = []
    if not args.skip_validation:
        log("validation against the float64 reference:")
        start = time.perf_counter()
        failures = validate(device, log)
        log(f"validation: {len(failures)} failure(s) in {time.perf_counter() - start:.1f} s")

    timer = Timer(device)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    out_bytes = (args.queries // args.batch) * args.batch * args.channels * args.patch**2 * 4
    copy_gbps = copy_bandwidth(out_bytes, device, timer, args.repeats)
    log(f"device-to-device copy of {out_bytes / 2**30:.2f} GiB: {copy_gbps:.0f} GB/s")
    results: dict[str, dict] = {}
    errors: dict[str, dict] = {}
    for dtype in dtypes:
        key = str(dtype).replace("torch.", "")
        results[key] = {}
        for method in METHODS:
            reason = unavailable_reason(method, device)
            if reason is not None:
                results[key][method] = {"unavailable": reason}
                log(f"  {method}: unavailable ({reason})")
                continue
            results[key][method] = time_modes(method, args, device, dtype, timer, log)
        try:
            errors[key] = errors_vs_float64(args, device, dtype)
        except RuntimeError:
            log(traceback.format_exc())
            errors[key] = {}
        log(f"  errors vs float64 ({key}): {errors[key]}")
        if dtype in (torch.bfloat16, torch.float16):
            for method in ("triton", "cuda"):
                if method in errors[key] and errors[key][method] > 2 * errors[key]["grid_sample"]:
                    failures.append(f"{method} {key} error {errors[key][method]:.3g} > 2x "
                                    f"grid_sample's {errors[key]['grid_sample']:.3g}")
    sweep = sweep_forward(args, device, timer, log) if args.sweep_forward else []
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for k, a in enumerate(given)
             if not a.startswith("--log-dir") and (k == 0 or given[k - 1] != "--log-dir")]
    command = "python benchmarks/bench_patch_sample_gpu.py " + " ".join(shown)
    notes = []
    if failures:
        notes.append("")
        notes.append("Validation FAILED: " + "; ".join(failures) + ".")
    section, table = render(args, device_name, results, copy_gbps, errors, sweep, notes,
                            command.strip())
    print(table)
    write_atomic(pathlib.Path(args.output), section)
    if args.log_dir:
        log_dir = pathlib.Path(args.log_dir)
        write_atomic(log_dir / "patch_sample_gpu.md", section)
        payload = {"results": results, "errors": errors, "copy_gbps": copy_gbps,
                   "sweep": sweep, "failures": failures, "log": log_lines}
        write_atomic(log_dir / "bench_patch_sample_gpu.json", json.dumps(payload, indent=1))
    if failures:
        log("FAILURES: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
