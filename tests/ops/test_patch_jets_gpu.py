"""GPU backends of ``patch_sample_jets`` ("triton" and "cuda") on CUDA tensors vs the reference.

Skipped without a CUDA device (the same Triton code is checked on CPU through the interpreter by
tests/ops/test_patch_jets_triton.py). With FUNKNN_REQUIRE_GPU_BACKENDS=1 (set by
benchmarks/gpu_check.sh) a missing backend fails instead of skipping; "cuda" needs the extension's
CUDA jets kernels (csrc/cuda/patch_jets_cuda.cu). Kept small in the number of Triton
specialisations (patch size, mode, padding and dtype are compile-time constants): every one
compiles on first use.
"""

import pytest
import torch
from _backend_cases import (
    ATOMIC_NONDET_TOL,
    DEVICE,
    MID,
    ODD,
    PADDINGS,
    TINY,
    benchmark_scale_results,
    make_inputs,
)
from _backend_cases import GPU_BACKENDS as BACKENDS
from _backend_cases import JET_MODE_NAMES as MODES
from _backend_cases import assert_jets_close_scaled as assert_close_scaled
from _backend_cases import jets_reference as reference
from _backend_cases import require as require_backend

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from funknn_fast.ops.backends import backends  # noqa: E402
from funknn_fast.ops.jets import (  # noqa: E402
    _select_jets_backend,
    has_cuda_jets_kernels,
    patch_sample_jets,
)


def require(backend: str) -> None:
    require_backend(backend, jets=True)


def test_auto_picks_a_gpu_backend():
    image = torch.zeros(1, 1, 2, 2, device=DEVICE)
    if backends()["triton"].available:
        assert _select_jets_backend("auto", image) == "triton"
    elif backends()["cuda"].available and has_cuda_jets_kernels():
        assert _select_jets_backend("auto", image) == "cuda"
    else:
        assert _select_jets_backend("auto", image) == "torch"


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_matches_reference(backend, padding):
    require(backend)
    for case in (ODD, MID):
        for mode in MODES:
            image, coords, step = make_inputs(case, torch.float64)
            out = patch_sample_jets(image, coords, step, case[5], padding, mode, backend)
            assert out.dtype == torch.float64 and out.device.type == "cuda"
            assert_close_scaled(out, reference(image, coords, step, case[5], padding, mode),
                                1e-10, f"{backend} float64 {mode} {case}")
        image, coords, step = make_inputs(case, torch.float32, seed=1)
        out = patch_sample_jets(image, coords, step, case[5], padding, "hessian", backend)
        assert out.dtype == torch.float32
        assert_close_scaled(out, reference(image, coords, step, case[5], padding, "hessian"),
                            1e-4, f"{backend} float32 hessian {case}")
    image, coords, step = make_inputs(TINY, torch.float64)
    out = patch_sample_jets(image, coords, step, 1, padding, "hessian", backend)
    assert_close_scaled(out, reference(image, coords, step, 1, padding, "hessian"), 1e-10,
                        f"{backend} tiny")


@pytest.mark.parametrize(
    "dtype,padding,mode",
    [(torch.float64, "reflection", m) for m in MODES]
    + [(torch.float64, "zeros", "hessian"), (torch.float32, "reflection", "hessian")],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_matches_reference_autograd(backend, dtype, padding, mode):
    require(backend)
    for case in (ODD, MID):
        p = case[5]
        inputs = make_inputs(case, dtype, seed=2, requires_grad=True)
        out = patch_sample_jets(*inputs, p, padding, mode, backend)
        generator = torch.Generator().manual_seed(3)
        cotangent = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(DEVICE)
        got = torch.autograd.grad(out, inputs, cotangent.to(dtype))
        ref_inputs = tuple(t.detach().double().requires_grad_() for t in inputs)
        want = torch.autograd.grad(reference(*ref_inputs, p, padding, mode), ref_inputs,
                                   cotangent)
        tol = 1e-10 if dtype == torch.float64 else 3e-4
        for name, a, b in zip(("image", "coords", "step"), got, want, strict=True):
            assert a.dtype == dtype
            assert_close_scaled(a, b, tol, f"{backend} {mode} {padding} d/d{name} {case}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    require(backend)
    inputs = make_inputs((1, 2, 4, 3, 3, 3, 1.5), torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, c, s: patch_sample_jets(i, c, s, 3, "reflection", "hessian", backend), inputs,
        nondet_tol=ATOMIC_NONDET_TOL,  # atomics: the image gradient's last bits vary run to run
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_coordinates_and_empty_queries(backend):
    require(backend)
    image, coords, step = make_inputs(ODD, torch.float32)
    coords = coords.clone()
    coords[0, 1, 0] = float("nan")
    coords[1, 2, 1] = float("-inf")
    out = patch_sample_jets(image, coords, step, 9, "zeros", "hessian", backend)
    assert torch.isnan(out[:, 0, 1]).all() and torch.isnan(out[:, 1, 2]).all()
    finite = torch.ones(out.shape[1:3], dtype=torch.bool, device=DEVICE)
    finite[0, 1] = finite[1, 2] = False
    assert torch.isfinite(out[:, finite]).all()
    empty = patch_sample_jets(image, coords[:, :0], step, 9, "border", "hessian", backend)
    assert empty.shape == (6, 2, 0, 2, 9, 9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_images(backend):
    """float16/bfloat16 images with float32 coords and step: float32 accumulation, so the jets
    are the float64 jets of the rounded image up to the output rounding."""
    require(backend)
    image, coords, step = make_inputs(MID, torch.float64, seed=4)
    for dtype in (torch.bfloat16, torch.float16):
        low = image.to(dtype).requires_grad_()
        inputs = (low, coords.float().requires_grad_(), step.float().requires_grad_())
        out = patch_sample_jets(*inputs, 9, "reflection", "laplacian", backend)
        assert out.dtype == dtype
        expected = reference(*(t.detach() for t in inputs), 9, "reflection", "laplacian")
        assert_close_scaled(out, expected, 2 * torch.finfo(dtype).eps, f"{backend} {dtype}")
        # A small cotangent: the Laplacian's image gradient sums s_x^2-scaled weights of many
        # samples, which overflows float16 for unit cotangents.
        cotangent = 1e-4 * torch.randn(out.shape, device=DEVICE)
        grads = torch.autograd.grad((out.float() * cotangent).sum(), inputs)
        assert [g.dtype for g in grads] == [dtype, torch.float32, torch.float32]
        assert all(bool(torch.isfinite(g).all()) for g in grads)


def test_backends_agree_at_benchmark_scale():
    """8 images of 3 x 128 x 128, 8192 queries, p = 9, Hessian jets: GPU backends vs CPU."""
    available = [b for b in BACKENDS if backends()[b].available
                 and (b != "cuda" or has_cuda_jets_kernels())]
    if not available:
        pytest.skip("no GPU backend of patch_sample_jets available")
    results, cpu_backend = benchmark_scale_results(
        lambda i, c, s, backend: patch_sample_jets(i, c, s, 9, "reflection", "hessian", backend),
        (6, 8, 1024, 3, 9, 9), available,
    )
    for backend in available:
        for name, got, want in zip(("jets", "image", "coords", "step"), results[backend],
                                   results[cpu_backend], strict=True):
            assert_close_scaled(got, want, 1e-4, f"{backend} vs {cpu_backend} {name}")


def test_deterministic_mode():
    """Triton: bitwise reproducible image gradients. CUDA C++: reproducible, or a clear refusal."""
    image, coords, step = make_inputs(MID, torch.float32, requires_grad=True)
    cotangent = torch.randn(6, *MID[:1], MID[4], MID[1], 9, 9, device=DEVICE)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for backend in BACKENDS:
            if not backends()[backend].available:
                continue
            if backend == "cuda" and not has_cuda_jets_kernels():
                continue

            def run(backend=backend):
                out = patch_sample_jets(image, coords, step, 9, "reflection", "hessian", backend)
                return torch.autograd.grad(out, (image, coords, step), cotangent)

            try:
                runs = [run() for _ in range(2)]
            except RuntimeError as error:
                assert backend == "cuda" and "determinis" in str(error), error
                continue
            for a, b in zip(runs[0], runs[1], strict=True):
                assert torch.equal(a, b), backend
    finally:
        torch.use_deterministic_algorithms(previous)


def test_opcheck_on_cuda():
    image, coords, step = make_inputs((1, 2, 3, 2, 2, 2, 1.5), torch.float64, requires_grad=True)
    grad = torch.randn(6, 1, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    ops = []
    if backends()["triton"].available:
        from funknn_fast.kernels import patch_jets_triton as pjt

        ops.append((pjt.forward_op, pjt.backward_op, {}))
    if backends()["cuda"].available and has_cuda_jets_kernels():
        namespace = torch.ops.funknn_fast
        ops.append((namespace.patch_sample_jets.default,
                    namespace.patch_sample_jets_backward.default,
                    {"test_utils": ("test_schema", "test_faketensor")}))
    if not ops:
        pytest.skip("no GPU backend of patch_sample_jets available")
    for forward, backward, backward_options in ops:
        torch.library.opcheck(forward, (image, coords, step, 2, 2, 2))
        with torch.no_grad():
            torch.library.opcheck(
                backward,
                (grad, image.detach(), coords.detach(), step.detach(), 2, 0, 2,
                 [True, True, True]),
                **backward_options,
            )
