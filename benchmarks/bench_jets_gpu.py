"""GPU benchmark of ``patch_sample_jets``: Triton and CUDA backends against the PyTorch reference.

Workload: 8 images of 3 x 128 x 128, 2^18 queries in all (the Hessian jets of 2^20 queries would
be 5.8 GB of float32 output, and the plain-torch reference needs about 16x that), p = 9,
reflection padding, float32 and bfloat16 images (float32 coords and step). Modes: Laplacian
jets forward (K = 4), Hessian jets forward (K = 6), and Hessian jets forward + backward
(gradients w.r.t. image and coords). Methods: "triton",
"cuda" (the CUDA key of ``funknn_fast::patch_sample_jets``, when the extension has it) and
"torch" (``patch_sample_jets_reference``: gathered taps and einsum contractions). Times are
medians of CUDA-event timings after a warm-up (which also compiles the Triton kernels); the
plain ``patch_sample`` forward of the same queries (Triton) is timed as a yardstick.

Bandwidth: the forward's bytes moved (jets written + image and coords read; the output
dominates) over its time, against a device-to-device copy of the Hessian jets' size. Errors: max
|jets - float64 reference| per method on a subset of the queries, each component scaled by
1 + its max magnitude.

Before timing, a validation (no pytest needed) checks the GPU backends against the float64
reference (all modes and paddings, forward and backward); the script exits with status 1 if a
check fails.

Usage:
  python benchmarks/bench_jets_gpu.py [--queries N] [--repeats N] [--sweep-forward] [--log-dir DIR]
  python benchmarks/bench_jets_gpu.py --dry-run   # CPU, tiny sizes, Triton interpreted
Writes the Markdown section to benchmarks/results/jets_gpu.md (and DIR, if given).
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

HERE = pathlib.Path(__file__).resolve().parent
MODES = (("laplacian", "forward"), ("hessian", "forward"), ("hessian", "forward+backward"))
METHODS = ("triton", "cuda", "torch")
PADDINGS = ("zeros", "border", "reflection")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1 << 18, help="queries in all")
    parser.add_argument("--patch", type=int, default=9)
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="image dtypes, comma-separated (coords and step stay float32)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--error-queries", type=int, default=4096,
                        help="queries (in all) of the float64 error measurement")
    parser.add_argument("--sweep-forward", action="store_true",
                        help="also time the Triton Hessian forward under a few launch "
                        "configurations (FUNKNN_TRITON_FORWARD_CONFIG, shared with patch_sample)")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU tensors, tiny sizes, Triton through its interpreter")
    parser.add_argument("--output", default=None,
                        help="default benchmarks/results/jets_gpu.md (none in a dry run)")
    parser.add_argument("--log-dir", help="also write the table and a JSON of the results here")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch, args.size, args.queries, args.patch, args.repeats = 2, 8, 4, 3, 1
        args.error_queries = 4
    elif args.output is None:
        args.output = str(HERE / "results" / "jets_gpu.md")
    return args


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

    def __call__(self, fn, repeats: int) -> float:
        fn()  # warm-up: compiles Triton kernels, fills caches
        if self.cuda:
            self.torch.cuda.synchronize()
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


def unavailable_reason(method: str, device, dtype) -> str | None:
    """Why ``method`` cannot run jets on this device and dtype (None when it can)."""
    from funknn_fast.backends import backends
    from funknn_fast.jets import has_cuda_jets_kernels

    if method == "torch":
        return None
    status = backends()[method]
    if not status.available:
        return status.reason
    if method == "cuda":
        if device.type != "cuda":
            return "needs CUDA tensors"
        if not has_cuda_jets_kernels():
            return "the extension has no CUDA jets kernels"
    return None


def jets_fn(method: str, padding: str = "reflection"):
    """(image, coords, step, p, derivatives) -> (K, B, Q, C, p, p) for a method name."""
    from funknn_fast.jets import patch_sample_jets

    def run(image, coords, step, p, derivatives):
        return patch_sample_jets(image, coords, step, p, padding, derivatives, backend=method)

    return run


def method_inputs(method, image, coords, step):
    """The torch reference takes coords and step in the image dtype."""
    if method == "torch":
        return image, coords.to(image.dtype), step.to(image.dtype)
    return image, coords, step


# ------------------------------------------------------------------------------------ validation


def validate(device, log) -> list[str]:
    """GPU backends vs the float64 reference; returns the failures (empty when all pass)."""
    import torch

    from funknn_fast.jets import patch_sample_jets_reference

    failures = []
    cases = [(2, 3, 37, 50, 200, 9, 1.5), (2, 2, 3, 1, 5, 9, 30.0), (1, 1, 1, 2, 3, 1, 4.0)]
    if device.type != "cuda":
        cases = [(1, 3, 5, 7, 3, 3, 1.5), (1, 1, 1, 2, 2, 1, 4.0)]

    def check(label, got, want, tol):
        got, want = got.detach().double(), want.detach()
        if want.numel() == 0:
            return
        parts = zip(got, want, strict=True) if want.dim() == 6 else [(got, want)]
        error = max(float((a - b).abs().max()) / (1.0 + float(b.abs().max())) for a, b in parts)
        ok = error <= tol
        log(f"  {'ok  ' if ok else 'FAIL'} {label}: scaled max error {error:.3g} (tol {tol:.0e})")
        if not ok:
            failures.append(label)

    for method in ("triton", "cuda"):
        reason = unavailable_reason(method, device, torch.float64)
        if reason is not None:
            log(f"  skip {method}: {reason}")
            continue
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
            for dtype, derivatives, tol in ((torch.float64, "gradient", 1e-10),
                                            (torch.float64, "laplacian", 1e-10),
                                            (torch.float64, "hessian", 1e-10),
                                            (torch.float32, "hessian", 1e-4)):
                for padding in PADDINGS:
                    inputs = [t.to(device, dtype).requires_grad_() for t in base]
                    refs = [t.to(device).requires_grad_() for t in base]
                    out = jets_fn(method, padding)(*inputs, p, derivatives)
                    ref = patch_sample_jets_reference(*refs, p, padding, derivatives)
                    label = f"{method} {dtype} {derivatives} {padding} {case}"
                    check(f"{label} forward", out, ref, tol)
                    if padding != "reflection":
                        continue
                    w = torch.randn(out.shape, generator=generator, dtype=torch.float64)
                    w = w.to(device)
                    grads = torch.autograd.grad(out, inputs, w.to(dtype))
                    ref_grads = torch.autograd.grad(ref, refs, w)
                    for name, a, b in zip(("image", "coords", "step"), grads, ref_grads,
                                          strict=True):
                        check(f"{label} d/d{name}", a, b, tol * 3)
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

    fn = jets_fn(method)
    image, coords, step = method_inputs(method, *make_workload(args, device, dtype))
    p = args.patch
    generator = torch.Generator().manual_seed(1)
    shape = (6, image.shape[0], coords.shape[1], image.shape[1], p, p)
    weights = torch.rand(shape, generator=generator).to(device, dtype)

    def forward(derivatives):
        def body():
            with torch.no_grad():
                fn(image, coords, step, p, derivatives)

        return body

    def forward_backward():
        img = image.detach().requires_grad_()
        crd = coords.detach().requires_grad_()
        fn(img, crd, step, p, "hessian").backward(weights)

    results = {}
    for derivatives, kind in MODES:
        key = f"{derivatives} {kind}"
        body = forward(derivatives) if kind == "forward" else forward_backward
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        try:
            seconds = timer(body, args.repeats)
            peak = ((torch.cuda.max_memory_allocated() - base) / 2**30
                    if device.type == "cuda" else float("nan"))
            results[key] = {"seconds": seconds, "peak_gib": peak}
            log(f"  {method:7s} {str(dtype):15s} {key:27s} {seconds * 1e3:9.3f} ms  "
                f"peak {peak:.2f} GiB")
        except (RuntimeError, NotImplementedError) as error:  # e.g. out of memory
            first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
            results[key] = {"error": f"{type(error).__name__}: {first}"}
            log(f"  {method:7s} {str(dtype):15s} {key:27s} failed: {results[key]['error']}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if kind == "forward" and "seconds" in results[key]:
            components = 4 if derivatives == "laplacian" else 6
            moved = (components * shape[1] * shape[2] * shape[3] * p * p * image.element_size()
                     + image.numel() * image.element_size()
                     + coords.numel() * coords.element_size())
            results[key]["gbps"] = moved / results[key]["seconds"] / 1e9
    return results


def plain_forward_seconds(args, device, timer) -> float | None:
    """Triton ``patch_sample`` forward of the same workload (float32), the yardstick."""
    import torch

    import funknn_fast

    if unavailable_reason("triton", device, torch.float32) is not None:
        return None
    image, coords, step = make_workload(args, device, torch.float32)

    def body():
        with torch.no_grad():
            funknn_fast.patch_sample(image, coords, step, args.patch, "reflection",
                                     backend="triton")

    return timer(body, args.repeats)


def sweep_forward(args, device, timer, log) -> list[tuple[str, float]]:
    """Triton Hessian forward (float32) under several (elements per program, warps) configs."""
    import torch

    rows = []
    if unavailable_reason("triton", device, torch.float32) is not None:
        return rows
    image, coords, step = make_workload(args, device, torch.float32)
    fn = jets_fn("triton")
    previous = os.environ.get("FUNKNN_TRITON_FORWARD_CONFIG")
    try:
        configs = ("64,2", "128,4", "256,8", "256,4", "512,8")
        for config in configs[1:3] if args.dry_run else configs:
            os.environ["FUNKNN_TRITON_FORWARD_CONFIG"] = config

            def body():
                with torch.no_grad():
                    fn(image, coords, step, args.patch, "hessian")

            seconds = timer(body, args.repeats)
            rows.append((config, seconds))
            log(f"  triton Hessian jets forward float32 config {config}: {seconds * 1e3:.3f} ms")
    finally:
        if previous is None:
            os.environ.pop("FUNKNN_TRITON_FORWARD_CONFIG", None)
        else:
            os.environ["FUNKNN_TRITON_FORWARD_CONFIG"] = previous
    return rows


def copy_bandwidth(nbytes: int, device, timer, repeats: int) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written over time)."""
    import torch

    src = torch.empty(max(1, nbytes // 4), dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timer(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds / 1e9


def errors_vs_float64(args, device, dtype) -> dict:
    """Scaled max error of each method's Hessian jets in ``dtype`` against float64."""
    import torch

    from funknn_fast.jets import patch_sample_jets_reference

    image, coords, step = (t.double() for t in make_workload(args, device, torch.float64))
    per_image = max(1, args.error_queries // args.batch)
    coords = coords[:, :per_image].contiguous()
    p = args.patch
    reference = patch_sample_jets_reference(image, coords, step, p, "reflection", "hessian")
    out = {}
    for method in METHODS:
        if unavailable_reason(method, device, dtype) is not None:
            continue
        inputs = method_inputs(method, image.to(dtype), coords.float(), step.float())
        got = jets_fn(method)(*inputs, p, "hessian").double()
        out[method] = max(float((a - b).abs().max()) / (1.0 + float(b.abs().max()))
                          for a, b in zip(got, reference, strict=True))
    return out


# ------------------------------------------------------------------------------------ report


def render(args, device_name, results, copy_gbps, errors, plain, sweep, notes, command):
    keys = [f"{d} {k}" for d, k in MODES]
    lines = [
        "| dtype | method | Laplacian jets fwd (ms) | Hessian jets fwd (ms) | Hessian jets "
        "fwd + bwd (ms) | Hessian fwd GB/s (% of copy) | speed-up vs torch (3 columns) "
        "| peak GiB (fwd + bwd) | scaled max error vs float64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(result):
        return f"{result['seconds'] * 1e3:.3f}" if "seconds" in result else "n/a"

    for dtype, per_method in results.items():
        base = per_method.get("torch", {})
        for method, modes in per_method.items():
            if "unavailable" in modes:
                lines.append(f"| {dtype} | {method} | unavailable: {modes['unavailable']} "
                             "| | | | | | |")
                continue
            hess = modes.get(keys[1], {})
            bandwidth = (f"{hess['gbps']:.0f} ({100 * hess['gbps'] / copy_gbps:.0f}%)"
                         if "gbps" in hess else "n/a")
            ups = " / ".join(
                f"{base[k]['seconds'] / modes[k]['seconds']:.1f}x"
                if "seconds" in base.get(k, {}) and "seconds" in modes.get(k, {}) else "n/a"
                for k in keys
            )
            if method == "torch":
                ups = "1.0x (baseline)"
            fwd_bwd = modes.get(keys[2], {})
            peak = f"{fwd_bwd['peak_gib']:.2f}" if "peak_gib" in fwd_bwd else "n/a"
            error = errors.get(dtype, {}).get(method)
            lines.append(
                f"| {dtype} | {method} | {ms(modes.get(keys[0], {}))} | {ms(hess)} | "
                f"{ms(fwd_bwd)} | {bandwidth} | {ups} | {peak} | "
                f"{'n/a' if error is None else f'{error:.2e}'} |"
            )
    table = "\n".join(lines)
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    section = [
        "## patch_sample_jets on GPU (issue 5)",
        "",
        f"Command: `{command}`; device: {device_name}; torch {torch.__version__}, "
        f"triton {triton_version}, Python {platform.python_version()}; "
        f"date: {datetime.date.today().isoformat()}.",
        f"Workload: {args.batch} images of {args.channels} x {args.size} x {args.size}, "
        f"{args.queries} queries in all, p = {args.patch}, reflection padding; median of "
        f"{args.repeats} timings (CUDA events) after a warm-up. Fwd + bwd: Hessian jets, then "
        "the gradient of <w, jets> w.r.t. image and coords. GB/s: (jets + image + coords bytes) "
        "/ time, against a device-to-device copy of the Hessian jets' size: "
        f"{copy_gbps:.0f} GB/s (read + write). Error: on {args.error_queries} queries, "
        "max |jets - float64 reference| per component over 1 + its max magnitude.",
    ]
    if plain is not None:
        section.append(f"Yardstick: the Triton `patch_sample` forward (one component) of the "
                       f"same queries takes {plain * 1e3:.3f} ms.")
    section += ["", table]
    if sweep:
        timings = ", ".join(f"{c}: {t * 1e3:.3f} ms" for c, t in sweep)
        section += ["", "Triton Hessian jets forward under launch configurations (float32; "
                    f"FUNKNN_TRITON_FORWARD_CONFIG = elements per program, warps): {timings}."]
    failed = [f"{d} {m} {k}: {r['error']}" for d, pm in results.items() for m, modes in
              pm.items() for k, r in modes.items() if isinstance(r, dict) and "error" in r]
    if failed:
        section += ["", "Cells marked n/a failed: " + "; ".join(failed) + "."]
    section += notes
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
    from funknn_fast.jets import has_cuda_jets_kernels

    for name, status in backends().items():
        log(f"backend {name}: {'available' if status.available else 'unavailable'} "
            f"({status.reason})")
    log(f"CUDA jets kernels in the extension: {has_cuda_jets_kernels()}")
    failures: list[str] = []
    if not args.skip_validation:
        log("validation against the float64 reference:")
        start = time.perf_counter()
        failures = validate(device, log)
        log(f"validation: {len(failures)} failure(s) in {time.perf_counter() - start:.1f} s")

    timer = Timer(device)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    per_image = args.queries // args.batch
    jets_bytes = 6 * args.batch * per_image * args.channels * args.patch**2 * 4
    copy_gbps = copy_bandwidth(jets_bytes, device, timer, args.repeats)
    log(f"device-to-device copy of {jets_bytes / 2**30:.2f} GiB: {copy_gbps:.0f} GB/s")
    plain = plain_forward_seconds(args, device, timer)
    if plain is not None:
        log(f"  triton patch_sample forward (yardstick): {plain * 1e3:.3f} ms")
    results: dict[str, dict] = {}
    errors: dict[str, dict] = {}
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        results[name] = {}
        for method in METHODS:
            reason = unavailable_reason(method, device, dtype)
            if reason is not None:
                results[name][method] = {"unavailable": reason}
                log(f"  {method}: unavailable ({reason})")
                continue
            results[name][method] = time_modes(method, args, device, dtype, timer, log)
        try:
            errors[name] = errors_vs_float64(args, device, dtype)
        except RuntimeError as error:
            log(f"  error measurement failed: {error}")
            errors[name] = {}
        log(f"  errors vs float64 ({name}): {errors[name]}")
    sweep = sweep_forward(args, device, timer, log) if args.sweep_forward else []
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for k, a in enumerate(given)
             if not a.startswith("--log-dir") and (k == 0 or given[k - 1] != "--log-dir")]
    command = ("python benchmarks/bench_jets_gpu.py " + " ".join(shown)).strip()
    notes = ["", "Validation FAILED: " + "; ".join(failures) + "."] if failures else []
    section, table = render(args, device_name, results, copy_gbps, errors, plain, sweep, notes,
                            command)
    print(table)
    if args.output:
        write_atomic(pathlib.Path(args.output), section)
    if args.log_dir:
        log_dir = pathlib.Path(args.log_dir)
        write_atomic(log_dir / "jets_gpu.md", section)
        payload = {"results": results, "errors": errors, "copy_gbps": copy_gbps,
                   "plain_forward_seconds": plain, "sweep": sweep, "failures": failures,
                   "log": log_lines}
        write_atomic(log_dir / "bench_jets_gpu.json", json.dumps(payload, indent=1))
    if failures:
        log("FAILURES: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
