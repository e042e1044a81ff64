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

import sys

import gpu_bench_common as common
from gpu_bench_common import HERE

MODES = ("forward", "forward+backward", "second order")
METHODS = ("triton", "cuda", "grid_sample")


def parse_args(argv=None):
    parser = common.make_parser(
        __doc__.splitlines()[0], queries=1 << 20, dtypes_help=None,
        sweep_help="also time the Triton forward under a few launch configurations",
        output_default=str(HERE / "results" / "patch_sample_gpu.md"), output_help=None,
    )
    return common.parse(parser, argv)


# ------------------------------------------------------------------------------------ helpers


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
    return common.backend_unavailable(method, device)


# ------------------------------------------------------------------------------------ validation


def validate(device, log) -> list[str]:
    """Backends vs the float64 reference; returns the failures (empty when all pass)."""
    import torch

    from funknn_fast.ops.reference import patch_sample_reference

    failures = []

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
        for case in common.validation_cases(device):
            p = case[5]
            base, generator = common.validation_inputs(case)
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
    return failures


# ------------------------------------------------------------------------------------ timing


def time_modes(method, args, device, dtype, timer, log) -> dict:
    import torch

    fn = method_fn(method)
    image, coords, step = method_inputs(method, *common.make_workload(args, device, dtype))
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
        result = results[mode] = common.measure(timer, body, args.repeats, device)
        if "error" in result:
            log(f"  {method:11s} {str(dtype):15s} {mode:17s} failed: {result['error']}")
        else:
            log(f"  {method:11s} {str(dtype):15s} {mode:17s} {result['seconds'] * 1e3:9.3f} ms  "
                f"peak {result['peak_gib']:.2f} GiB")
    if "seconds" in results.get("forward", {}):
        moved = (out_shape[0] * out_shape[1] * out_shape[2] * p * p * image.element_size()
                 + image.numel() * image.element_size() + coords.numel() * coords.element_size())
        results["forward"]["bytes"] = moved
        results["forward"]["gbps"] = moved / results["forward"]["seconds"] / 1e9
    return results


def errors_vs_float64(args, device, dtype) -> dict:
    """Max abs error of each method in ``dtype`` against float64, on a subset of the queries."""
    from funknn_fast.ops.reference import patch_sample_reference

    sys.path.insert(0, str(HERE))
    from patch_sample_baselines import grid_sample_patches

    image, coords, step = common.error_workload(args, device)
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
    image, coords, step = common.make_workload(args, device, torch.float32)
    fn = method_fn("triton")
    for config in ("64,2", "128,4", "256,4", "256,8", "512,8"):
        with common.forward_config(config), torch.no_grad():
            seconds = timer(lambda: fn(image, coords, step, args.patch), args.repeats)
        rows.append((config, seconds))
        log(f"  triton forward float32 config {config}: {seconds * 1e3:.3f} ms")
    return rows


# ------------------------------------------------------------------------------------ report


def render(args, device_name, results, copy_gbps, errors, sweep, notes, command) -> str:
    table = common.results_table(
        "| dtype | method | forward (ms) | fwd + bwd (ms) | second order (ms) | forward GB/s "
        "(% of copy) | speed-up vs grid_sample (fwd / fwd+bwd / 2nd) | peak GiB (2nd) "
        "| max error vs float64 |",
        results, errors, copy_gbps, "grid_sample", MODES, "forward", "second order",
    )
    section = [
        "## patch_sample on GPU (issue 3)",
        "",
        common.environment_line(command, device_name),
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
    section += common.section_tail(sweep, "Triton forward launch configurations", results, notes)
    return "\n".join(section) + "\n", table


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = common.chosen_methods(args, METHODS)
    started = common.start(args)
    if started is None:
        return 2
    device, log = started
    import torch

    previous = common.previous_results(args, "bench_patch_sample_gpu.json")
    failures = common.run_validation(validate, args, device, log)
    timer = common.Timer(device)
    out_bytes = (args.queries // args.batch) * args.batch * args.channels * args.patch**2 * 4
    copy_gbps = common.guarded(
        "copy bandwidth", lambda: common.copy_bandwidth(out_bytes, device, timer, args.repeats),
        log, failures, default=float("nan"))
    log(f"device-to-device copy of {out_bytes / 2**30:.2f} GiB: {copy_gbps:.0f} GB/s")
    command = common.command_line("bench_patch_sample_gpu.py", argv)
    state = {"results": previous.get("results", {}), "errors": previous.get("errors", {}),
             "copy_gbps": copy_gbps, "sweep": previous.get("sweep", []),
             "failures": previous.get("failures", []) + failures, "log": log.lines}

    def render_state(payload):
        return render(args, common.device_name(device), payload["results"],
                      payload["copy_gbps"], payload["errors"], payload["sweep"],
                      common.failure_notes(payload["failures"]), command)

    checkpoint = common.Checkpoint(args, "patch_sample_gpu.md", "bench_patch_sample_gpu.json",
                                   render_state)
    for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
        key = str(dtype).replace("torch.", "")
        common.time_methods(
            methods, lambda method: unavailable_reason(method, device),
            lambda method, dtype=dtype: time_modes(method, args, device, dtype, timer, log), log,
            results=state["results"].setdefault(key, {}), checkpoint=lambda: checkpoint(state),
        )
        errors = common.guarded(f"{key} error measurement",
                                lambda dtype=dtype: errors_vs_float64(args, device, dtype), log,
                                state["failures"], default={})
        state["errors"].setdefault(key, {}).update(errors)
        log(f"  errors vs float64 ({key}): {state['errors'][key]}")
        if dtype in (torch.bfloat16, torch.float16):
            measured = state["errors"][key]
            for method in ("triton", "cuda"):
                if method in errors and "grid_sample" in measured and \
                        errors[method] > 2 * measured["grid_sample"]:
                    state["failures"].append(
                        f"{method} {key} error {errors[method]:.3g} > 2x grid_sample's "
                        f"{measured['grid_sample']:.3g}")
        checkpoint(state)
    if args.sweep_forward and "triton" in methods:
        state["sweep"] = common.guarded("forward sweep",
                                        lambda: sweep_forward(args, device, timer, log), log,
                                        state["failures"], default=[])
        checkpoint(state)
    section, table = render_state(state)
    print(table)
    return common.exit_status(state["failures"], log)


if __name__ == "__main__":
    sys.exit(main())
