"""Ahead-of-time compile check of the Triton kernels of ``patch_sample``, without a GPU.

Compiles the forward, backward and double-backward kernels of ``patch_sample_triton`` (or, with
``--jets``, the forward and backward kernels of ``patch_jets_triton``) for a CUDA target (default
sm_90, the H100) through Triton's own compiler and its bundled ptxas, and reports per variant the
registers and spill bytes that ptxas gives and whether the forward's image reads became vector
loads. Catches what the interpreter cannot: type errors of the compiled language,
unsupported atomics, register spills. Must run without TRITON_INTERPRET=1 (the kernels would be
interpreted functions then).

Usage: python -m funknn_fast.kernels.aot_check [--arch 90] [--quick] [--jets]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from funknn_fast.kernels import patch_jets_triton as pjt
from funknn_fast.kernels import patch_sample_triton as pst

_TYPES = {"fp16": "*fp16", "bf16": "*bf16", "fp32": "*fp32", "fp64": "*fp64"}


def _compute(image: str) -> str:
    return "fp64" if image == "fp64" else "fp32"


def _torch_dtype(image: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
            "fp64": torch.float64}[image]


def _forward_pointers(image: str) -> dict[str, str]:
    """Pointer types of a forward kernel's arguments for an image dtype."""
    c = _compute(image)
    return {"image_ptr": _TYPES[image], "coords_ptr": _TYPES[c], "step_ptr": _TYPES[c],
            "out_ptr": _TYPES[image]}


def _backward_pointers(image: str) -> dict[str, str]:
    """Pointer types of the backward kernels' arguments (double backward's included)."""
    c = _compute(image)
    return {
        "go_ptr": _TYPES[image], "image_ptr": _TYPES[image], "coords_ptr": _TYPES[c],
        "step_ptr": _TYPES[c], "gimg_ptr": _TYPES[c], "gcoords_ptr": _TYPES[c],
        "partial_ptr": _TYPES[c], "val_ptr": _TYPES[c], "idx_ptr": "*i64",
        "vimg_ptr": _TYPES[image], "vcoords_ptr": _TYPES[c], "vstep_ptr": _TYPES[c],
        "ggo_ptr": _TYPES[image],
    }


# The 64-bit integer arguments of the backward kernels.
_BACKWARD_INTS = {"q_begin": "i64", "q_end": "i64", "partial_offset": "i64"}


def _signature(kernel, pointers: dict[str, str], ints: dict[str, str], constexprs: dict) -> dict:
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in pointers:
            signature[name] = pointers[name]
        else:
            signature[name] = ints.get(name, "i32")
    return signature


def variants(quick: bool, patch_size: int = 9) -> list[tuple[str, object, dict, dict, dict, int]]:
    """(label, kernel, pointer types, int types, constexprs, warps) of the variants to compile,
    with the launch configurations ``patch_sample_triton`` uses."""
    out = []
    images = ["bf16", "fp32"] if quick else ["fp16", "bf16", "fp32", "fp64"]
    block, forward_warps = pst._forward_launch_config()
    padded, per_program, backward_warps = pst._tile_config(patch_size, 256)
    _, per_program_2, double_warps = pst._tile_config(patch_size, 128)
    for image in images:
        pointers = _forward_pointers(image)
        chunks = {pst._channel_chunk(channels, _torch_dtype(image)) for channels in (1, 2, 3)}
        for chunk in ([pst._channel_chunk(3, _torch_dtype(image))] if quick else sorted(chunks)):
            constexprs = {"P": patch_size, "CB": chunk, "PADDING": 2, "BLOCK": block}
            out.append((f"forward {image} CB={chunk}", pst._forward_kernel, pointers,
                        {"total": "i64"}, constexprs, forward_warps))
        backward_pointers = _backward_pointers(image)
        ints = _BACKWARD_INTS
        for deterministic in ([False] if quick and image != "fp32" else [False, True]):
            constexprs = {"P": patch_size, "PPAD": padded, "PADDING": 2,
                          "BLOCK_Q": per_program, "NEED_IMAGE": True, "NEED_POS": True,
                          "DETERMINISTIC": deterministic}
            out.append((f"backward {image} det={deterministic}", pst._backward_kernel,
                        backward_pointers, ints, constexprs, backward_warps))
            constexprs = {"P": patch_size, "PPAD": padded, "PADDING": 2,
                          "BLOCK_Q": per_program_2, "HAS_VIMAGE": True, "HAS_DIRECTION": True,
                          "NEED_GO": True, "NEED_IMAGE": True, "NEED_POS": True,
                          "DETERMINISTIC": deterministic}
            out.append((f"double backward {image} det={deterministic}",
                        pst._double_backward_kernel, backward_pointers, ints, constexprs,
                        double_warps))
    return out


def jets_variants(
    quick: bool, patch_size: int = 9
) -> list[tuple[str, object, dict, dict, dict, int]]:
    """Variants of the ``patch_jets_triton`` kernels, with the launch configurations it uses:
    every mode of the forward and backward (quick: the widest mode per dtype, and the others in
    float32)."""
    out = []
    images = ["bf16", "fp32", "fp64"] if quick else ["fp16", "bf16", "fp32", "fp64"]
    block, forward_warps = pst._forward_launch_config()
    padded, per_program, backward_warps = pst._tile_config(patch_size, 256)
    for image in images:
        modes = [0, 1, 2] if image == "fp32" or not quick else [2]
        pointers = _forward_pointers(image)
        chunk = pst._channel_chunk(3, _torch_dtype(image))
        for mode in modes:
            constexprs = {"P": patch_size, "CB": chunk, "PADDING": 2, "MODE": mode, "BLOCK": block}
            out.append((f"jets forward {image} mode={mode} CB={chunk}", pjt._jets_forward_kernel,
                        pointers, {"total": "i64", "component_stride": "i64"}, constexprs,
                        forward_warps))
        backward_pointers = _backward_pointers(image)
        ints = {**_BACKWARD_INTS, "component_stride": "i64"}
        for mode in modes:
            for deterministic in [False, True] if image == "fp32" and mode == 2 else [False]:
                constexprs = {"P": patch_size, "PPAD": padded, "PADDING": 2, "MODE": mode,
                              "BLOCK_Q": per_program, "NEED_IMAGE": True, "NEED_POS": True,
                              "DETERMINISTIC": deterministic}
                out.append((f"jets backward {image} mode={mode} det={deterministic}",
                            pjt._jets_backward_kernel, backward_pointers, ints, constexprs,
                            backward_warps))
    return out


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int]:
    """(registers, spill bytes) that ptxas -v reports for the kernel in ``ptx``."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as handle:
            handle.write(ptx)
        result = subprocess.run(
            [ptxas, f"-arch=sm_{arch}a", "-v", path, "-o", os.path.join(tmp, "kernel.cubin")],
            capture_output=True, text=True, check=True,
        )
    registers = re.search(r"Used (\d+) registers", result.stderr)
    spills = re.search(r"(\d+) bytes spill stores", result.stderr)
    return (int(registers.group(1)) if registers else -1, int(spills.group(1)) if spills else -1)


def compile_all(arch: int, quick: bool, jets: bool = False) -> list[dict]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("aot_check needs TRITON_INTERPRET unset (compiled kernels)")
    target = GPUTarget("cuda", arch, 32)
    report = []
    chosen = jets_variants(quick) if jets else variants(quick)
    for label, kernel, pointers, ints, constexprs, warps in chosen:
        start = time.perf_counter()
        signature = _signature(kernel, pointers, ints, constexprs)
        attrs = {(i,): [["tt.divisibility", 16]]
                 for i, name in enumerate(kernel.arg_names) if name in pointers}
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
        compiled = triton.compile(source, target=target, options={"num_warps": warps})
        ptx = compiled.asm["ptx"]
        registers, spills = _ptxas_usage(ptx, arch)
        report.append({
            "variant": label,
            "warps": warps,
            "seconds": round(time.perf_counter() - start, 2),
            "registers": registers,
            "spill_bytes": spills,
            "vector_loads": len(re.findall(r"ld\.global(?:\.nc)?[\w.]*\.v[248]\.", ptx)),
            "atomics": len(re.findall(r"\b(?:atom|red)\.global", ptx)),
        })
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90")
    parser.add_argument("--quick", action="store_true", help="a representative subset")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--jets", action="store_true",
                        help="the kernels of patch_jets_triton instead of patch_sample_triton")
    args = parser.parse_args()
    report = compile_all(args.arch, args.quick, args.jets)
    if args.json:
        print(json.dumps(report))
    else:
        for row in report:
            print(" ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
