"""Shared pieces of the GPU benchmarks ``bench_patch_sample_gpu.py`` and ``bench_jets_gpu.py``.

Both time funknn_fast ops on one CUDA device (or, with ``--dry-run``, on CPU tensors with Triton
interpreted) on the same workload: ``--batch`` images (B, C, H, W) = (batch, channels, size,
size) with uniform values in [0, 1), ``--queries`` query coordinates (B, Q, 2) uniform in
[-1, 1) in the ``grid_sample`` convention (align_corners=False), step (1, 1) in input pixels.
This module holds what the two scripts share: the command line, the workload, CUDA-event
timing with peak memory, the device-to-device copy bandwidth, the validation inputs, the
Markdown cells and header, and the atomic writing of the results.

Robustness (issue 14: one GPU run, minutes long, must keep what it measured): every timing,
validation check and error measurement is guarded by ``guarded`` (Triton's compile and launch
errors -- CompilationError, OutOfResources, PTXASError -- are not RuntimeErrors: any Exception
counts), and the scripts rewrite their Markdown section and JSON after each measured method
(``Checkpoint``), so a later failure or a step timeout loses nothing already taken.
``--methods`` runs a subset of the methods and ``--merge`` adds them to the JSON a previous run
left in ``--log-dir`` (gpu_check.sh times the Triton rows before the CUDA extension is built,
the CUDA rows after).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
# Validation shapes (batch, channels, height, width, queries, p, spread of the coords).
VALIDATION_CASES = [(2, 3, 37, 50, 200, 9, 1.5), (2, 2, 3, 1, 5, 9, 30.0), (1, 1, 1, 2, 3, 1, 4.0)]
DRY_RUN_CASES = [(1, 3, 5, 7, 3, 3, 1.5), (1, 1, 1, 2, 2, 1, 4.0)]
FORWARD_CONFIG_ENV = "FUNKNN_TRITON_FORWARD_CONFIG"


# ------------------------------------------------------------------------------------ command line


def make_parser(
    description: str, queries: int, dtypes_help: str | None, sweep_help: str, output_default,
    output_help: str | None,
) -> argparse.ArgumentParser:
    """The options of both scripts; the arguments are the texts and defaults that differ."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--queries", type=int, default=queries, help="queries in all")
    parser.add_argument("--patch", type=int, default=9)
    parser.add_argument("--dtypes", default="float32,bfloat16", help=dtypes_help)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--error-queries", type=int, default=4096,
                        help="queries (in all) of the float64 error measurement")
    parser.add_argument("--sweep-forward", action="store_true", help=sweep_help)
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU tensors, tiny sizes, Triton through its interpreter")
    parser.add_argument("--output", default=output_default, help=output_help)
    parser.add_argument("--log-dir", help="also write the table and a JSON of the results here")
    parser.add_argument("--methods", help="comma-separated subset of the methods to time")
    parser.add_argument("--merge", action="store_true",
                        help="add to the results of a previous run in --log-dir")
    return parser


def chosen_methods(args, methods: tuple[str, ...]) -> tuple[str, ...]:
    """``methods`` restricted to --methods (in their order); unknown names raise."""
    if not args.methods:
        return methods
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(methods))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(methods)}")
    return tuple(m for m in methods if m in wanted)


def previous_results(args, json_name: str) -> dict:
    """The JSON payload a previous run left in --log-dir (with --merge), else {}."""
    if not (args.merge and args.log_dir):
        return {}
    path = pathlib.Path(args.log_dir) / json_name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def guarded(what: str, fn, log, failures: list[str] | None = None, default=None):
    """``fn()``, or ``default`` when it raises any Exception (Triton's compile and launch errors
    are not RuntimeErrors), logged with its first line and added to ``failures``."""
    try:
        return fn()
    except Exception as error:  # a benchmark keeps going and reports
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        log(f"  {what} failed: {type(error).__name__}: {first_line}")
        if failures is not None:
            failures.append(f"{what}: {type(error).__name__}: {first_line}")
        return default


class Checkpoint:
    """Rewrites a script's section and JSON whenever called: after each measured method."""

    def __init__(self, args, name: str, json_name: str, render) -> None:
        self.args, self.name, self.json_name, self.render = args, name, json_name, render

    def __call__(self, payload: dict) -> None:
        section, _ = self.render(payload)
        write_results(self.args, section, self.name, self.json_name, payload)


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parsed arguments; a dry run shrinks the workload to a few tiny images."""
    args = parser.parse_args(argv)
    if args.dry_run:
        args.batch, args.size, args.queries, args.patch, args.repeats = 2, 8, 4, 3, 1
        args.error_queries = 4
    return args


def command_line(script: str, argv=None) -> str:
    """The command as run (without --log-dir and its value), for the results section."""
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for k, a in enumerate(given)
             if not a.startswith("--log-dir") and (k == 0 or given[k - 1] != "--log-dir")]
    return (f"python benchmarks/{script} " + " ".join(shown)).strip()


# ------------------------------------------------------------------------------------ set-up


def select_device(args):
    """CPU for a dry run (Triton interpreted: set before funknn_fast imports Triton), else CUDA;
    None (with a message) when there is no CUDA device."""
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run for a CPU check of this script", file=sys.stderr)
        return None
    return device


def time_methods(methods, unavailable, time_method, log, results=None, checkpoint=None) -> dict:
    """{method: timings} of one dtype: ``time_method(method)``, or {"unavailable": reason} when
    ``unavailable(method)`` gives a reason, added to ``results`` (a dict kept by the caller);
    ``checkpoint()`` after each method."""
    results = {} if results is None else results
    for method in methods:
        reason = guarded(f"{method} availability", lambda m=method: unavailable(m), log,
                         default="availability check failed")
        if reason is not None:
            results[method] = {"unavailable": reason}
            log(f"  {method}: unavailable ({reason})")
        else:
            results[method] = guarded(f"{method} timing", lambda m=method: time_method(m), log,
                                      default={"failed": {"error": "timing raised"}})
        if checkpoint is not None:
            checkpoint()
    return results


def start(args):
    """(device, log) once the backends are logged (``select_device``), or None without a CUDA
    device (the scripts then exit with status 2)."""
    device = select_device(args)
    if device is None:
        return None
    log = Log()
    log_backends(log)
    return device, log


def device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"


class Log:
    """Prints a message to stderr and keeps it (``lines``) for the JSON log."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        self.lines.append(message)


def log_backends(log) -> None:
    from funknn_fast.ops.backends import backends

    for name, status in backends().items():
        log(f"backend {name}: {'available' if status.available else 'unavailable'} "
            f"({status.reason})")


def backend_unavailable(method: str, device) -> str | None:
    """Why funknn_fast backend ``method`` cannot run on ``device`` (None when it can)."""
    from funknn_fast.ops.backends import backends

    status = backends()[method]
    if not status.available:
        return status.reason
    if method == "cuda" and device.type != "cuda":
        return "needs CUDA tensors"
    return None


def run_validation(validate, args, device, log) -> list[str]:
    """``validate(device, log)`` (the failures) unless --skip-validation."""
    if args.skip_validation:
        return []
    log("validation against the float64 reference:")
    start = time.perf_counter()
    failures: list[str] = []
    found = guarded("validation", lambda: validate(device, log), log, failures, default=[])
    failures = list(found) + failures
    log(f"validation: {len(failures)} failure(s) in {time.perf_counter() - start:.1f} s")
    return failures


def validation_cases(device) -> list[tuple]:
    return VALIDATION_CASES if device.type == "cuda" else DRY_RUN_CASES


def validation_inputs(case):
    """Float64 (image, coords, step) of a validation case, on CPU, and the generator that made
    them (seed 7; the callers draw their cotangents from it next)."""
    import torch

    batch, channels, height, width, queries, _, spread = case
    generator = torch.Generator().manual_seed(7)
    base = [
        torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64),
        (torch.rand(batch, queries, 2, generator=generator, dtype=torch.float64) * 2 - 1)
        * spread,
        torch.tensor([0.85, 1.3], dtype=torch.float64),
    ]
    return base, generator


# ------------------------------------------------------------------------------------ timing


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


def measure(timer: Timer, body, repeats: int, device) -> dict:
    """{"seconds", "peak_gib"} of ``body`` (peak: CUDA memory above what was allocated before;
    NaN on CPU), or {"error": ...} when it raises (a missing double backward, OOM, a Triton
    compile or launch error: any Exception)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    try:
        seconds = timer(body, repeats)
        peak = ((torch.cuda.max_memory_allocated() - base) / 2**30
                if device.type == "cuda" else float("nan"))
        return {"seconds": seconds, "peak_gib": peak}
    except Exception as error:  # Triton's errors are not RuntimeErrors
        first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        return {"error": f"{type(error).__name__}: {first_line}"}


def make_workload(args, device, dtype):
    """(image, coords, step) of the timed workload; image in ``dtype``, coords and step float32."""
    import torch

    generator = torch.Generator().manual_seed(0)
    per_image = args.queries // args.batch
    image = torch.rand(args.batch, args.channels, args.size, args.size, generator=generator)
    coords = torch.rand(args.batch, per_image, 2, generator=generator) * 2 - 1
    step = torch.tensor([1.0, 1.0])
    return image.to(device, dtype), coords.to(device), step.to(device)


def error_workload(args, device):
    """The workload in float64 with the first ``--error-queries`` queries (in all)."""
    import torch

    image, coords, step = (t.double() for t in make_workload(args, device, torch.float64))
    per_image = max(1, args.error_queries // args.batch)
    return image, coords[:, :per_image].contiguous(), step


def copy_bandwidth(nbytes: int, device, timer: Timer, repeats: int) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written over time)."""
    import torch

    src = torch.empty(max(1, nbytes // 4), dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timer(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds / 1e9


@contextlib.contextmanager
def forward_config(config: str):
    """FUNKNN_TRITON_FORWARD_CONFIG = ``config`` (elements per program, warps) inside, then the
    previous value (or none) again."""
    previous = os.environ.get(FORWARD_CONFIG_ENV)
    os.environ[FORWARD_CONFIG_ENV] = config
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FORWARD_CONFIG_ENV, None)
        else:
            os.environ[FORWARD_CONFIG_ENV] = previous


# ------------------------------------------------------------------------------------ report


def cell_ms(result: dict) -> str:
    return f"{result['seconds'] * 1e3:.3f}" if "seconds" in result else "n/a"


def speedup(base: dict, ours: dict) -> str:
    if "seconds" in base and "seconds" in ours:
        return f"{base['seconds'] / ours['seconds']:.1f}x"
    return "n/a"


def bandwidth_cell(result: dict, copy_gbps: float) -> str:
    if "gbps" not in result:
        return "n/a"
    return f"{result['gbps']:.0f} ({100 * result['gbps'] / copy_gbps:.0f}%)"


def peak_cell(result: dict) -> str:
    return f"{result['peak_gib']:.2f}" if "peak_gib" in result else "n/a"


def error_cell(error: float | None) -> str:
    return f"{error:.2e}" if error is not None else "n/a"


def unavailable_row(dtype: str, method: str, reason: str) -> str:
    return f"| {dtype} | {method} | unavailable: {reason} | | | | | | |"


def results_table(header: str, results: dict, errors: dict, copy_gbps: float, baseline: str,
                  keys, bandwidth_key: str, peak_key: str) -> str:
    """Markdown table, a row per (dtype, method): the times of the three timed ``keys``, the
    forward bandwidth of ``bandwidth_key``, the speed-ups over method ``baseline``, the peak
    memory of ``peak_key`` and the error against float64. ``header`` names the nine columns."""
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for dtype, per_method in results.items():
        base = per_method.get(baseline, {})
        for method, modes in per_method.items():
            if "unavailable" in modes:
                lines.append(unavailable_row(dtype, method, modes["unavailable"]))
                continue
            ups = " / ".join(speedup(base.get(k, {}), modes.get(k, {})) for k in keys)
            if method == baseline:
                ups = "1.0x (baseline)"
            times = " | ".join(cell_ms(modes.get(k, {})) for k in keys)
            lines.append(
                f"| {dtype} | {method} | {times} | "
                f"{bandwidth_cell(modes.get(bandwidth_key, {}), copy_gbps)} | {ups} | "
                f"{peak_cell(modes.get(peak_key, {}))} | "
                f"{error_cell(errors.get(dtype, {}).get(method))} |"
            )
    return "\n".join(lines)


def failed_cells(results: dict) -> list[str]:
    """"dtype method mode: error" of every timing that raised."""
    return [f"{d} {m} {k}: {r['error']}" for d, pm in results.items() for m, modes in
            pm.items() for k, r in modes.items() if isinstance(r, dict) and "error" in r]


def environment_line(command: str, name: str) -> str:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return (f"Command: `{command}`; device: {name}; torch {torch.__version__}, "
            f"triton {triton_version}, Python {platform.python_version()}; "
            f"date: {datetime.date.today().isoformat()}.")


def section_tail(sweep: list[tuple[str, float]], sweep_title: str, results: dict,
                 notes: list[str]) -> list[str]:
    """The lines after a section's table: the launch-configuration sweep (if any), the timings
    that failed (if any), then ``notes``."""
    lines = []
    if sweep:
        timings = ", ".join(f"{c}: {s * 1e3:.3f} ms" for c, s in sweep)
        lines += ["", f"{sweep_title} (float32; FUNKNN_TRITON_FORWARD_CONFIG = lanes per "
                  f"program, warps): {timings}."]
    failed = failed_cells(results)
    if failed:
        lines += ["", "Cells marked n/a failed: " + "; ".join(failed) + "."]
    return lines + notes


def failure_notes(failures: list[str]) -> list[str]:
    return ["", "Validation FAILED: " + "; ".join(failures) + "."] if failures else []


def write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_results(args, section: str, name: str, json_name: str, payload: dict) -> None:
    """The section to --output (if any) and, with --log-dir, to DIR/``name`` with the JSON
    ``payload`` in DIR/``json_name``."""
    if args.output:
        write_atomic(pathlib.Path(args.output), section)
    if args.log_dir:
        log_dir = pathlib.Path(args.log_dir)
        write_atomic(log_dir / name, section)
        write_atomic(log_dir / json_name, json.dumps(payload, indent=1))


def exit_status(failures: list[str], log) -> int:
    if failures:
        log("FAILURES: " + "; ".join(failures))
        return 1
    return 0
