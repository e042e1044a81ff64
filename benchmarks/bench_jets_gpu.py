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

import sys

import gpu_bench_common as common
from gpu_bench_common import HERE

MODES = (("laplacian", "forward"), ("hessian", "forward"), ("hessian", "forward+backward"))
METHODS = ("triton", "cuda", "torch")
PADDINGS = ("zeros", "border", "reflection")


def parse_args(argv=None):
    parser = common.make_parser(
        __doc__.splitlines()[0], queries=1 << 18,
        dtypes_help="image dtypes, comma-separated (coords and step stay float32)",
        sweep_help="also time the Triton Hessian forward under a few launch "
        "configurations (FUNKNN_TRITON_FORWARD_CONFIG, shared with patch_sample)",
        output_default=None,
        output_help="default benchmarks/results/jets_gpu.md (none in a dry run)",
    )
    args = common.parse(parser, argv)
    if not args.dry_run and args.output is None:
        args.output = str(HERE / "results" / "jets_gpu.md")
    return args


def unavailable_reason(method: str, device, dtype) -> str | None:
    """Why ``method`` cannot run jets on this device and dtype (None when it can)."""
    from funknn_fast.ops.jets import has_cuda_jets_kernels

    if method == "torch":
        return None
    reason = common.backend_unavailable(method, device)
    if reason is None and method == "cuda" and not has_cuda_jets_kernels():
        return "the extension has no CUDA jets kernels"
    return reason


def jets_fn(method: str, padding: str = "reflection"):
    """(image, coords, step, p, derivatives) -> (K, B, Q, C, p, p) for a method name."""
    from funknn_fast.ops.jets import patch_sample_jets

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

    from funknn_fast.ops.jets import patch_sample_jets_reference

    failures = []

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
        for case in common.validation_cases(device):
            p = case[5]
            base, generator = common.validation_inputs(case)
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


def time_modes(method, args, device, dtype, timer, log) -> dict:
    import torch

    fn = jets_fn(method)
    image, coords, step = method_inputs(method, *common.make_workload(args, device, dtype))
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
        result = results[key] = common.measure(timer, body, args.repeats, device)
        if "error" in result:  # e.g. out of memory
            log(f"  {method:7s} {str(dtype):15s} {key:27s} failed: {result['error']}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            log(f"  {method:7s} {str(dtype):15s} {key:27s} {result['seconds'] * 1e3:9.3f} ms  "
                f"peak {result['peak_gib']:.2f} GiB")
        if kind == "forward" and "seconds" in result:
            components = 4 if derivatives == "laplacian" else 6
            moved = (components * shape[1] * shape[2] * shape[3] * p * p * image.element_size()
                     + image.numel() * image.element_size()
                     + coords.numel() * coords.element_size())
            result["gbps"] = moved / result["seconds"] / 1e9
    return results


def plain_forward_seconds(args, device, timer) -> float | None:
    """Triton ``patch_sample`` forward of the same workload (float32), the yardstick."""
    import torch

    import funknn_fast

    if unavailable_reason("triton", device, torch.float32) is not None:
        return None
    image, coords, step = common.make_workload(args, device, torch.float32)

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
    image, coords, step = common.make_workload(args, device, torch.float32)
    fn = jets_fn("triton")

    def body():
        with torch.no_grad():
            fn(image, coords, step, args.patch, "hessian")

    configs = ("64,2", "128,4", "256,8", "256,4", "512,8")
    for config in configs[1:3] if args.dry_run else configs:
        with common.forward_config(config):
            seconds = timer(body, args.repeats)
        rows.append((config, seconds))
        log(f"  triton Hessian jets forward float32 config {config}: {seconds * 1e3:.3f} ms")
    return rows


def errors_vs_float64(args, device, dtype) -> dict:
    """Scaled max error of each method's Hessian jets in ``dtype`` against float64."""
    from funknn_fast.ops.jets import patch_sample_jets_reference

    image, coords, step = common.error_workload(args, device)
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
    table = common.results_table(
        "| dtype | method | Laplacian jets fwd (ms) | Hessian jets fwd (ms) | Hessian jets "
        "fwd + bwd (ms) | Hessian fwd GB/s (% of copy) | speed-up vs torch (3 columns) "
        "| peak GiB (fwd + bwd) | scaled max error vs float64 |",
        results, errors, copy_gbps, "torch", keys, keys[1], keys[2],
    )
    section = [
        "## patch_sample_jets on GPU (issue 5)",
        "",
        common.environment_line(command, device_name),
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
    section += common.section_tail(
        sweep, "Triton Hessian jets forward under launch configurations", results, notes
    )
    return "\n".join(section) + "\n", table


def main(argv=None) -> int:
    args = parse_args(argv)
    methods = common.chosen_methods(args, METHODS)
    started = common.start(args)
    if started is None:
        return 2
    device, log = started
    import torch

    from funknn_fast.ops.jets import has_cuda_jets_kernels

    log(f"CUDA jets kernels in the extension: {has_cuda_jets_kernels()}")
    previous = common.previous_results(args, "bench_jets_gpu.json")
    failures = common.run_validation(validate, args, device, log)
    timer = common.Timer(device)
    per_image = args.queries // args.batch
    jets_bytes = 6 * args.batch * per_image * args.channels * args.patch**2 * 4
    copy_gbps = common.guarded(
        "copy bandwidth", lambda: common.copy_bandwidth(jets_bytes, device, timer, args.repeats),
        log, failures, default=float("nan"))
    log(f"device-to-device copy of {jets_bytes / 2**30:.2f} GiB: {copy_gbps:.0f} GB/s")
    plain = common.guarded("yardstick", lambda: plain_forward_seconds(args, device, timer), log,
                           failures)
    if plain is not None:
        log(f"  triton patch_sample forward (yardstick): {plain * 1e3:.3f} ms")
    command = common.command_line("bench_jets_gpu.py", argv)
    state = {"results": previous.get("results", {}), "errors": previous.get("errors", {}),
             "copy_gbps": copy_gbps,
             "plain_forward_seconds": plain or previous.get("plain_forward_seconds"),
             "sweep": previous.get("sweep", []),
             "failures": previous.get("failures", []) + failures, "log": log.lines}

    def render_state(payload):
        return render(args, common.device_name(device), payload["results"],
                      payload["copy_gbps"], payload["errors"], payload["plain_forward_seconds"],
                      payload["sweep"], common.failure_notes(payload["failures"]), command)

    checkpoint = common.Checkpoint(args, "jets_gpu.md", "bench_jets_gpu.json", render_state)
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        common.time_methods(
            methods, lambda method, dtype=dtype: unavailable_reason(method, device, dtype),
            lambda method, dtype=dtype: time_modes(method, args, device, dtype, timer, log), log,
            results=state["results"].setdefault(name, {}), checkpoint=lambda: checkpoint(state),
        )
        errors = common.guarded(f"{name} error measurement",
                                lambda dtype=dtype: errors_vs_float64(args, device, dtype), log,
                                state["failures"], default={})
        state["errors"].setdefault(name, {}).update(errors)
        log(f"  errors vs float64 ({name}): {state['errors'][name]}")
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
