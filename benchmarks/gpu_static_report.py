"""Static facts of the GPU kernels, measured without a GPU: the "static" part of BENCHMARKS.md.

Two sources (issue 14):

* Triton's ahead-of-time compile for sm_90 of the launches the host code makes
  (``python -m funknn_fast.kernels.aot_check --quick [--jets] --json``): registers and spill bytes
  from ptxas, and static SASS counts (instructions, global loads, stores, atomics, MEMBAR fences,
  CCTL L1 invalidations);
* Triton's interpreter (``funknn_fast.kernels.access_counts``): the image reads and
  image-gradient atomics the patch-sampling kernels really make per output sample, at p = 9 and a
  few patch spacings (0.61 is the shipped FunkNN's learned step).

Writes ``benchmarks/results/patch_sample_gpu_static.md`` (``--output``); ``make_report.py`` puts it
in the GPU part of BENCHMARKS.md. No timing here: the timed GPU run is benchmarks/gpu_check.sh.

Usage: python benchmarks/gpu_static_report.py [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = (0.61, 1.0, 1.3, 2.0)
# Measured by the same interpreter count on the kernels before issue 14 (one program per
# (query, sample), 16 taps each): 16.00 image reads and 16.00 atomics per sample at every step.
BEFORE = {"forward reads": 16.0, "backward reads": 16.0, "backward atomics": 16.0}


def interpreter_counts() -> list[dict]:
    """Per-sample image reads (forward: one CB-channel vector per tap; backward: per channel) and
    image-gradient atomics (per channel) of the Triton kernels, 16 queries of 3 x 32 x 32, p = 9,
    reflection padding, bfloat16 image (its loads are told apart from the float32 coordinates)."""
    import torch

    from funknn_fast.kernels import patch_sample_triton as pst
    from funknn_fast.kernels.access_counts import count_accesses

    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 32, 32, generator=generator).bfloat16()
    coords = torch.rand(1, 16, 2, generator=generator) * 1.6 - 0.8
    samples, channels = 16 * 81, 3
    rows = []
    for value in STEPS:
        step = torch.tensor([value, value])
        with count_accesses() as forward:
            pst.triton_patch_sample(image, coords, step, 9, "reflection")
        leaf, where = image.clone().requires_grad_(), coords.clone().requires_grad_()
        out = pst.triton_patch_sample(leaf, where, step, 9, "reflection")
        with count_accesses() as backward:  # image and coordinate gradients
            torch.autograd.grad(out, (leaf, where), torch.ones_like(out))
        rows.append({
            "step": value,
            "forward reads": forward.loads["bf16"] / 4 / samples,
            # the backward also reads the incoming gradient once per output element
            "backward reads": (backward.loads["bf16"] - samples * channels) / (samples * channels),
            "backward atomics": backward.atomics / (samples * channels),
        })
    return rows


def aot_rows(jets: bool) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    command = [sys.executable, "-m", "funknn_fast.kernels.aot_check", "--quick", "--json"]
    result = subprocess.run(command + (["--jets"] if jets else []), capture_output=True,
                            text=True, env=env, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def section(rows: list[dict], counts: list[dict], triton_version: str) -> str:
    lines = [
        "## GPU kernels, static (issue 14): ptxas, SASS and interpreter counts, sm_90, no GPU",
        "",
        "The timed GPU run (`benchmarks/gpu_check.sh`) is still pending: no GPU has been "
        "available to this project. These facts need none: `python benchmarks/"
        f"gpu_static_report.py` (triton {triton_version}; Triton's ahead-of-time compile with "
        "its bundled ptxas for sm_90, SASS by its cuobjdump, the launches the host code makes "
        "for 3 channels, p = 9, reflection padding, with the int types Triton's JIT gives them).",
        "",
        "Per output sample, measured by Triton's interpreter (p = 9, 16 queries; forward reads "
        "are 4-channel vector taps of the channels-last copy, backward reads and atomics are per "
        "channel). Before issue 14 every sample gathered its own 16 taps: "
        f"{BEFORE['forward reads']:.2f} / {BEFORE['backward reads']:.2f} / "
        f"{BEFORE['backward atomics']:.2f} at every step (same count).",
        "",
        "| patch step (pixels) | forward image reads / sample | backward image reads / sample "
        "| backward atomics / sample |",
        "|---|---|---|---|",
    ]
    for row in counts:
        lines.append(f"| {row['step']} | {row['forward reads']:.2f} | "
                     f"{row['backward reads']:.2f} | {row['backward atomics']:.2f} |")
    lines += [
        "",
        "SASS of each launch (static counts: a loop body counts once). Relaxed atomics: the "
        "image-gradient REDs carry no MEMBAR or CCTL (acq_rel atomics had one of each per "
        "atomic: 16 per sample per channel before). Forward and backward: at most 128 registers, "
        "no spills (the forward used 130 registers in float32 before, 1 block of 256 threads "
        "per SM).",
        "",
        "| launch | warps | registers | spill bytes | SASS instructions | LDG (64/128-bit) | STG "
        "| RED / ATOM | MEMBAR | CCTL | 32-bit int args widened to 64 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        widened = ", ".join(n for n in row["widened"] if n == "component_stride") or "-"
        lines.append(
            f"| {row['variant']} | {row['warps']} | {row['registers']} | {row['spill_bytes']} | "
            f"{row['instructions']} | {row['global_loads']} ({row['vector_loads']}) | "
            f"{row['global_stores']} | {row['reds']} / {row['atoms']} | {row['membars']} | "
            f"{row['cctl']} | {widened} |"
        )
    lines += [
        "",
        "Last column: the jets kernels widen `component_stride` (= B Q C p^2, typed i32 by Triton "
        "below 2^31) before k * component_stride, k <= 5, which wrapped for Hessian outputs "
        "above ~4.3e8 elements.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE / "results" / "patch_sample_gpu_static.md"))
    parser.add_argument("--counts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.counts:  # the interpreter half, in a process with TRITON_INTERPRET=1
        print(json.dumps(interpreter_counts()))
        return 0
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, __file__, "--counts"], capture_output=True,
                            text=True, env=env, check=True)
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    rows = aot_rows(jets=False) + aot_rows(jets=True)
    import triton

    text = section(rows, counts, triton.__version__)
    path = pathlib.Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
