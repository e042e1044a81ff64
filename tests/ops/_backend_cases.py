"""Shared set-up of the compiled-backend tests of ``patch_sample`` and ``patch_sample_jets``.

Used by tests/ops/test_patch_sample_triton.py and tests/ops/test_patch_jets_triton.py (Triton
kernels, through the interpreter on CPU tensors without a GPU: tests/conftest.py sets
TRITON_INTERPRET=1)
and by tests/ops/test_patch_sample_gpu.py and tests/ops/test_patch_jets_gpu.py (CUDA
tensors).
Cases are (B, C, H, W, Q, p, coordinate half-range); inputs are float64 draws cast to the tested
dtype:
image (B, C, H, W) standard normal, coords (B, Q, 2) uniform in +-half-range (grid_sample
convention, align_corners=False), an anisotropic non-integer step (step_x, step_y) in pixels.
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PADDINGS = ("zeros", "border", "reflection")
JET_MODE_NAMES = ("gradient", "laplacian", "hessian")
# FUNKNN_GPU_TEST_BACKENDS (comma-separated) limits the GPU tests' backends: benchmarks/gpu_check.sh
# runs the Triton ones before the CUDA extension is built, the CUDA ones after.
GPU_BACKENDS = tuple(
    name for name in os.environ.get("FUNKNN_GPU_TEST_BACKENDS", "triton,cuda").split(",") if name
)
# GPU cases: W = 1 with coordinates far outside; a 1 x 2 image with p = 1; a mid-sized image.
ODD = (2, 2, 3, 1, 5, 9, 30.0)
TINY = (1, 1, 1, 2, 3, 1, 4.0)
MID = (2, 3, 37, 50, 257, 9, 1.5)


def skip_unless_triton_runs() -> None:
    """Module-level skip of a Triton test file: no triton, or neither CUDA nor the interpreter."""
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA device and TRITON_INTERPRET is not set", allow_module_level=True)


def make_inputs(case, dtype, seed=0, requires_grad=False):
    """(image, coords, step) of ``case`` on DEVICE in ``dtype``."""
    batch, channels, height, width, queries, _, spread = case
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64)
    coords = (torch.rand(batch, queries, 2, generator=generator, dtype=torch.float64) * 2 - 1)
    coords = coords * spread
    # Anisotropic, non-integer step.
    step = torch.tensor([0.8, 1.35], dtype=torch.float64) + 0.1 * torch.rand(2, generator=generator)
    return tuple(
        t.to(DEVICE, dtype).requires_grad_(requires_grad) for t in (image, coords, step)
    )


def patch_reference(image, coords, step, patch_size, padding):
    """``patch_sample_reference`` in float64."""
    from funknn_fast.ops.reference import patch_sample_reference

    return patch_sample_reference(
        image.double(), coords.double(), step.double(), patch_size, padding
    )


def jets_reference(image, coords, step, patch_size, padding, mode):
    """``patch_sample_jets_reference`` in float64."""
    from funknn_fast.ops.jets import patch_sample_jets_reference

    return patch_sample_jets_reference(
        image.double(), coords.double(), step.double(), patch_size, padding, mode
    )


def assert_close_scaled(actual, expected, tol, what):
    """max |actual - expected| <= tol (1 + max |expected|) over the whole tensor."""
    actual, expected = actual.detach(), expected.detach()
    if expected.numel() == 0:
        return
    scale = 1.0 + float(expected.abs().max())
    error = float((actual.double() - expected).abs().max())
    assert error <= tol * scale, f"{what}: max error {error:.3g} > {tol * scale:.3g}"


def assert_jets_close_scaled(actual, expected, tol, what):
    """max |actual - expected| <= tol (1 + max |expected|), per jet component when 6-d."""
    actual, expected = actual.detach().double(), expected.detach().double()
    if expected.numel() == 0:
        return
    pairs = zip(actual, expected, strict=True) if expected.dim() == 6 else [(actual, expected)]
    for k, (a, e) in enumerate(pairs):
        scale = 1.0 + float(e.abs().max())
        error = float((a - e).abs().max())
        assert error <= tol * scale, f"{what} [{k}]: max error {error:.3g} > {tol * scale:.3g}"


def odd_layouts(image, coords, step):
    """{name: (image, coords, step)} with the values of the inputs (or, "expanded", of their first
    batch, query and step entry) in the layouts a caller may pass: channels-last, strided views,
    and stride-0 (expanded) views; each keeps ``requires_grad``."""

    def like(t, view):
        return view.detach().requires_grad_(t.requires_grad)

    batch, queries = coords.shape[:2]
    strided_coords = torch.stack((coords[..., 0], coords[..., 1]), dim=1).transpose(1, 2)
    return {
        "channels_last": (like(image, image.contiguous(memory_format=torch.channels_last)),
                          coords, step),
        "strided": (like(image, image.transpose(2, 3).contiguous().transpose(2, 3)),
                    like(coords, strided_coords), like(step, torch.stack((step, step), 1)[:, 0])),
        "expanded": (like(image, image[:1].expand(batch, -1, -1, -1)),
                     like(coords, coords[:, :1].expand(-1, queries, -1)),
                     like(step, step[:1].expand(2))),
    }


def permuted_like(tensor):
    """``tensor``'s values in a non-contiguous layout (its last two dims stored transposed)."""
    return tensor.transpose(-1, -2).contiguous().transpose(-1, -2)


ATOMIC_NONDET_TOL = 1e-10


def gradcheck_atomic(fn, inputs, **kwargs) -> None:
    """gradcheck and gradgradcheck of ``fn`` whose image gradient is a sum by float atomics: the
    summation order, hence the last bits, varies from run to run on a GPU, so the reentrancy
    check (the backward run twice) needs ``nondet_tol``; float64 sums of a few hundred terms
    reorder within ~1e-13 of their size."""
    assert torch.autograd.gradcheck(fn, inputs, nondet_tol=ATOMIC_NONDET_TOL, **kwargs)
    assert torch.autograd.gradgradcheck(fn, inputs, nondet_tol=ATOMIC_NONDET_TOL, **kwargs)


def first_and_second_order(fn, image, coords, step, seed=1):
    """Gradient of <g, out> w.r.t. all inputs, then the gradient of <v, that gradient>."""
    generator = torch.Generator().manual_seed(seed)
    out = fn(image, coords, step)
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out)
    first = torch.autograd.grad(out, (image, coords, step), weights, create_graph=True)
    directions = [torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in first]
    total = sum((g * v.to(g)).sum() for g, v in zip(first, directions, strict=True))
    second = torch.autograd.grad(total, (image, coords, step))
    return first, second


def require(backend: str, jets: bool = False) -> None:
    """Skip (or, with FUNKNN_REQUIRE_GPU_BACKENDS=1 as in benchmarks/gpu_check.sh, fail) when
    ``backend`` is unavailable; with ``jets``, "cuda" also needs the CUDA jets kernels."""
    from funknn_fast.ops.backends import backends

    status = backends()[backend]
    reason = None if status.available else status.reason
    if jets and reason is None and backend == "cuda":
        from funknn_fast.ops.jets import has_cuda_jets_kernels

        if not has_cuda_jets_kernels():
            reason = "the extension has no CUDA jets kernels (csrc/cuda/patch_jets_cuda.cu)"
    if reason is None:
        return
    message = f"backend {backend!r} unavailable{' for patch_sample_jets' if jets else ''}: {reason}"
    if os.environ.get("FUNKNN_REQUIRE_GPU_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def aot_check(args: list[str], salt: bytes, modules, check) -> None:
    """Runs ``python -m funknn_fast.kernels.aot_check --quick --json *args`` (an ahead-of-time
    sm_90 compile, no GPU needed, without the interpreter) and ``check(report)`` on its JSON
    rows. Skips without Triton's ptxas. A pass is remembered under ~/.cache/funknn_fast, keyed by
    Triton's version, ``salt`` and the sources of ``modules`` (aot_check itself added);
    FUNKNN_AOT_CHECK_NO_CACHE=1 forces the check."""
    import hashlib
    import json
    import pathlib
    import subprocess
    import sys

    import triton

    from funknn_fast.kernels import aot_check as aot_module

    ptxas = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.is_file():
        pytest.skip("Triton's NVIDIA backend (ptxas) is not installed")
    digest = hashlib.sha256(triton.__version__.encode() + salt)
    for module in (*modules, aot_module):
        digest.update(pathlib.Path(module.__file__).read_bytes())
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    marker = cache / "funknn_fast" / "aot_check" / digest.hexdigest()
    if marker.exists() and os.environ.get("FUNKNN_AOT_CHECK_NO_CACHE") != "1":
        return  # these exact kernels compiled cleanly with this Triton before
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-m", "funknn_fast.kernels.aot_check", "--quick", *args, "--json"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    check(json.loads(result.stdout.strip().splitlines()[-1]))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(result.stdout)


def benchmark_scale_results(run, weights_shape, gpu_backends) -> tuple[dict, str]:
    """8 images of 3 x 128 x 128 (uniform), 8192 queries in [-1.1, 1.1), p = 9, step (1, 0.75):
    ``run(image, coords, step, backend)`` on each of ``gpu_backends`` (DEVICE) and on the CPU
    backend ("cpu", else "torch"), then its gradients for a cotangent of ``weights_shape``.
    Returns ({backend: [output, d/dimage, d/dcoords, d/dstep] on CPU}, the CPU backend)."""
    from funknn_fast.ops.backends import backends

    generator = torch.Generator().manual_seed(3)
    image = torch.rand(8, 3, 128, 128, generator=generator)
    coords = torch.rand(8, 1024, 2, generator=generator) * 2.2 - 1.1
    step = torch.tensor([1.0, 0.75])
    weights = torch.randn(weights_shape, generator=generator)
    cpu_backend = "cpu" if backends()["cpu"].available else "torch"
    results = {}
    for backend in list(gpu_backends) + [cpu_backend]:
        device = "cpu" if backend == cpu_backend else DEVICE
        inputs = [t.to(device).requires_grad_() for t in (image, coords, step)]
        out = run(*inputs, backend)
        grads = torch.autograd.grad(out, inputs, weights.to(device))
        results[backend] = [t.detach().cpu() for t in (out, *grads)]
    return results, cpu_backend
