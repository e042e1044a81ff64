"""Ahead-of-time compile check of the Triton kernels of ``patch_sample``, without a GPU.

Compiles the forward, backward and double-backward kernels of ``patch_sample_triton`` (or, with
``--jets``, the forward and backward kernels of ``patch_jets_triton``) for a CUDA target (default
sm_90, the H100/H200) through Triton's own compiler and its bundled ptxas, and reports per variant
what ptxas and the SASS say: registers, spill bytes, instructions, global loads (vector loads of
the forward's channels-last image among them), stores, atomics (RED/ATOM), memory fences (MEMBAR)
and L1 invalidations (CCTL), and which 32-bit int arguments the kernel widens to 64 bits before
using them in offsets.

The variants are the launches the host code really makes: each launcher runs once on tiny CPU
tensors with its kernel replaced by a recorder (``recorded_launches``), and the recorded
arguments give the signature as Triton's JIT would type it (ints below 2^31 are i32, so a kernel
that needs 64-bit offsets must widen them itself) and the constexprs and warps of the launch.
``--wide`` adds, for every variant, the one Triton compiles for huge inputs (every int argument
i64). Catches what the interpreter cannot: type errors of the compiled language, unsupported
atomics, register spills, fences. Must run without TRITON_INTERPRET=1 (the kernels would be
interpreted functions then).

Usage: python -m funknn_fast.kernels.aot_check [--arch 90] [--quick] [--jets] [--wide]
       [--json] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from unittest import mock

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from funknn_fast.kernels import patch_jets_triton as pjt
from funknn_fast.kernels import patch_sample_triton as pst

_POINTER_TYPES = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32",
                  torch.float64: "*fp64", torch.int64: "*i64", torch.int32: "*i32"}
_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")


def int_type(value: int) -> str:
    """Triton's type of an int argument: i32 below 2^31 in magnitude, else i64 (u64 at 2^63)."""
    mangle = getattr(getattr(triton.runtime, "jit", None), "mangle_type", None)
    if mangle is not None:
        return mangle(value)
    if -(2**31) <= value < 2**31:
        return "i32"
    return "u64" if value >= 2**63 else "i64"


class _Recorder:
    """Stands in for a Triton kernel: records ``kernel[grid](*args, **kwargs)`` calls."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.calls: list[tuple[tuple, dict]] = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


def _record(module, name: str, call) -> list[tuple[object, tuple, dict]]:
    """(kernel, args, kwargs) of the launches of ``module.name`` that ``call()`` makes (tiny CPU
    tensors: the input checks pass as under the interpreter; nothing runs)."""
    recorder = _Recorder(getattr(module, name))
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}))
        stack.enter_context(mock.patch.object(module, name, recorder))
        call()
    return [(recorder.kernel, args, kwargs) for args, kwargs in recorder.calls[:1]]


def _inputs(dtype: torch.dtype, channels: int, patch_size: int):
    compute = pst._compute_dtype(torch.empty(0, dtype=dtype))
    image = torch.rand(1, channels, 8, 8).to(dtype)
    coords = torch.rand(1, 4, 2, dtype=compute) * 2 - 1
    step = torch.tensor([1.0, 1.0], dtype=compute)
    grad = torch.rand(1, 4, channels, patch_size, patch_size).to(dtype)
    return image, coords, step, grad


@contextlib.contextmanager
def _deterministic(enabled: bool):
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _jets_backward(grad, image, coords, step, p, mode, deterministic):
    with _deterministic(deterministic):
        pjt._backward(grad, image, coords, step, p, 2, mode, [True] * 3)


def _sample_backward(grad, image, coords, step, p, deterministic):
    with _deterministic(deterministic):
        pst._backward(grad, image, coords, step, p, 2, [True] * 3)


def _sample_double_backward(grad, image, coords, step, p, deterministic):
    directions = (torch.rand_like(image), torch.rand_like(coords), torch.rand_like(step))
    with _deterministic(deterministic):
        pst._double_backward(grad, image, coords, step, *directions, p, 2, [True] * 4)


def recorded_launches(quick: bool, jets: bool, patch_size: int = 9) -> list[tuple]:
    """(label, kernel, args, kwargs) of the launches the host code makes, reflection padding,
    3 channels (quick: a representative subset; full: 1, 2 and 3 channels for the forward)."""
    out = []
    p = patch_size
    images = (["bf16", "fp32", "fp64"] if jets else ["bf16", "fp32"]) if quick else [
        "fp16", "bf16", "fp32", "fp64"]
    names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
             "fp64": torch.float64}
    for label in images:
        dtype = names[label]
        if jets:
            modes = [0, 1, 2] if label == "fp32" or not quick else [2]
            image, coords, step, _ = _inputs(dtype, 3, p)
            for mode in modes:
                call = functools.partial(pjt._forward, image, coords, step, p, 2, mode)
                for launch in _record(pjt, "_jets_forward_kernel", call):
                    out.append((f"jets forward {label} mode={mode}", *launch))
            for mode in modes:
                grad = torch.rand(pjt.JET_COUNTS[mode], 1, 4, 3, p, p).to(dtype)
                for det in [False, True] if label == "fp32" and mode == 2 else [False]:
                    call = functools.partial(_jets_backward, grad, image, coords, step, p, mode,
                                             det)
                    for launch in _record(pjt, "_jets_backward_kernel", call):
                        out.append((f"jets backward {label} mode={mode} det={det}", *launch))
            continue
        for channels in [3] if quick else [1, 2, 3]:
            image, coords, step, _ = _inputs(dtype, channels, p)
            call = functools.partial(pst._forward, image, coords, step, p, 2)
            for launch in _record(pst, "_forward_kernel", call):
                out.append((f"forward {label} C={channels}", *launch))
        image, coords, step, grad = _inputs(dtype, 3, p)
        for det in [False] if quick and label != "fp32" else [False, True]:
            call = functools.partial(_sample_backward, grad, image, coords, step, p, det)
            for launch in _record(pst, "_backward_kernel", call):
                out.append((f"backward {label} det={det}", *launch))
            call = functools.partial(_sample_double_backward, grad, image, coords, step, p, det)
            for launch in _record(pst, "_double_backward_kernel", call):
                out.append((f"double backward {label} det={det}", *launch))
    return out


def signature_of(kernel, args: tuple, kwargs: dict, wide: bool = False) -> tuple[dict, dict, dict]:
    """(signature, constexprs, options) of a recorded launch, typed as Triton's JIT types it
    (``wide``: every int argument i64, the variant compiled for huge inputs)."""
    names = list(kernel.arg_names)
    values = dict(zip(names, args))
    constexprs = {k: v for k, v in kwargs.items() if k not in _LAUNCH_OPTIONS}
    options = {k: v for k, v in kwargs.items() if k in _LAUNCH_OPTIONS}
    signature = {}
    for name in names:
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        value = values[name]
        if isinstance(value, torch.Tensor):
            signature[name] = _POINTER_TYPES[value.dtype]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i64" if wide else int_type(value)
        else:
            signature[name] = "fp32"
    return signature, constexprs, options


def _tool(name: str) -> str:
    return os.path.join(_BIN, name)


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int]:
    """(registers, spill bytes) that ptxas -v reports for the kernel in ``ptx``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as handle:
            handle.write(ptx)
        result = subprocess.run(
            [_tool("ptxas"), f"-arch=sm_{arch}a", "-v", path, "-o",
             os.path.join(tmp, "kernel.cubin")],
            capture_output=True, text=True, check=True,
        )
    registers = re.search(r"Used (\d+) registers", result.stderr)
    spills = re.search(r"(\d+) bytes spill stores", result.stderr)
    return (int(registers.group(1)) if registers else -1, int(spills.group(1)) if spills else -1)


def sass_of(cubin: bytes) -> str:
    """The SASS of a cubin (Triton's bundled cuobjdump)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as handle:
            handle.write(cubin)
        result = subprocess.run([_tool("cuobjdump"), "-sass", path], capture_output=True,
                                text=True, check=True)
    return result.stdout


def sass_counts(sass: str) -> dict[str, int]:
    """Static instruction counts of a kernel's SASS."""
    instructions = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)
    count = {"instructions": len(instructions)}
    for key, names in (("global_loads", ("LDG",)), ("global_stores", ("STG",)),
                       ("reds", ("RED", "REDG")), ("atoms", ("ATOM", "ATOMG")),
                       ("membars", ("MEMBAR",)), ("fences", ("FENCE",)), ("cctl", ("CCTL",))):
        count[key] = sum(1 for op in instructions if op.split(".")[0] in names)
    count["vector_loads"] = sum(1 for op in instructions
                                if op.startswith("LDG") and re.search(r"\.(64|128)\b", op))
    return count


def widened_ints(ttir: str, signature: dict) -> list[str]:
    """The i32 int arguments the kernel sign-extends to i64 in its TTIR (``arith.extsi`` of the
    argument, named ``%name`` by recent Tritons and ``%argN`` by older ones)."""
    names = [n for n, t in signature.items() if t != "constexpr"]
    out = []
    for index, name in enumerate(names):
        pattern = rf"arith\.extsi %(?:{name}|arg{index})\b"
        if signature[name] == "i32" and re.search(pattern, ttir):
            out.append(name)
    return out


def compile_launch(label: str, kernel, args, kwargs, arch: int, wide: bool = False) -> dict:
    start = time.perf_counter()
    signature, constexprs, options = signature_of(kernel, args, kwargs, wide)
    pointers = [i for i, (n, t) in enumerate(signature.items()) if t.startswith("*")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in pointers}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    registers, spills = _ptxas_usage(compiled.asm["ptx"], arch)
    counts = sass_counts(sass_of(compiled.asm["cubin"]))
    ints = {n: t for n, t in signature.items() if t in ("i32", "i64")}
    return {
        "variant": label + (" wide" if wide else ""),
        "warps": options.get("num_warps", 4),
        "constexprs": {k: v for k, v in constexprs.items() if isinstance(v, (int, bool))},
        "ints": ints,
        "widened": widened_ints(compiled.asm["ttir"], signature),
        "seconds": round(time.perf_counter() - start, 2),
        "registers": registers,
        "spill_bytes": spills,
        **counts,
    }


def compile_all(arch: int, quick: bool, jets: bool = False, wide: bool = False) -> list[dict]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("aot_check needs TRITON_INTERPRET unset (compiled kernels)")
    report = []
    for label, kernel, args, kwargs in recorded_launches(quick, jets):
        report.append(compile_launch(label, kernel, args, kwargs, arch))
        if wide:
            report.append(compile_launch(label, kernel, args, kwargs, arch, wide=True))
    return report


def markdown(rows: list[dict], arch: int, command: str) -> str:
    """The static section of BENCHMARKS.md: a row per variant."""
    lines = [
        f"## GPU kernels, static: ptxas and SASS for sm_{arch} (issue 14)",
        "",
        f"Command: `{command}`; triton {triton.__version__}, torch {torch.__version__}; no GPU "
        "involved (Triton's ahead-of-time compile with its bundled ptxas, SASS by cuobjdump). "
        "Each row is a launch the host code makes for 3 channels, p = 9, reflection padding, "
        "with the argument types Triton's JIT gives it; counts are static SASS instructions of "
        "the whole kernel (a loop body counts once).",
        "",
        "| variant | warps | registers | spill bytes | SASS instr. | LDG (vector) | STG "
        "| RED/ATOM | MEMBAR | CCTL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['warps']} | {row['registers']} | {row['spill_bytes']} | "
            f"{row['instructions']} | {row['global_loads']} ({row['vector_loads']}) | "
            f"{row['global_stores']} | {row['reds'] + row['atoms']} | {row['membars']} | "
            f"{row['cctl']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    parser.add_argument("--quick", action="store_true", help="a representative subset")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--jets", action="store_true",
                        help="the kernels of patch_jets_triton instead of patch_sample_triton")
    parser.add_argument("--wide", action="store_true",
                        help="also the variants of huge inputs (every int argument i64)")
    parser.add_argument("--markdown", help="write the rows as a Markdown section to this file")
    args = parser.parse_args()
    report = compile_all(args.arch, args.quick, args.jets, args.wide)
    if args.markdown:
        command = "python -m funknn_fast.kernels.aot_check " + " ".join(sys.argv[1:])
        with open(args.markdown, "w") as handle:
            handle.write(markdown(report, args.arch, command))
    if args.json:
        print(json.dumps(report))
    else:
        for row in report:
            print(" ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
