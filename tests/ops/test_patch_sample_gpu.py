"""GPU backends of ``patch_sample`` ("triton" and "cuda") on CUDA tensors vs the float64 reference.

Skipped without a CUDA device (the same Triton code is checked on CPU through the interpreter by
tests/ops/test_patch_sample_triton.py, and the CUDA sources by tests/ops/test_cuda_compile.py). With
FUNKNN_REQUIRE_GPU_BACKENDS=1 (set by benchmarks/gpu_check.sh) a missing backend fails instead of
skipping. Kept small: every Triton specialisation compiles on first use.
"""

import pytest
import torch
from _backend_cases import (
    DEVICE,
    MID,
    ODD,
    PADDINGS,
    TINY,
    assert_close_scaled,
    benchmark_scale_results,
    first_and_second_order,
    gradcheck_atomic,
    make_inputs,
    require,
)
from _backend_cases import GPU_BACKENDS as BACKENDS
from _backend_cases import patch_reference as reference

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

import funknn_fast  # noqa: E402
from funknn_fast.ops.backends import backends, select_backend  # noqa: E402


def run(backend, padding, patch_size):
    def fn(image, coords, step):
        return funknn_fast.patch_sample(image, coords, step, patch_size, padding, backend=backend)

    return fn


def test_auto_picks_triton_on_cuda():
    require("triton")
    image = torch.zeros(1, 1, 2, 2, device=DEVICE)
    assert select_backend("auto", image) == "triton"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_matches_reference(backend, padding, dtype):
    require(backend)
    for case in (ODD, TINY, MID):
        image, coords, step = make_inputs(case, dtype)
        out = run(backend, padding, case[5])(image, coords, step)
        assert out.dtype == dtype and out.device.type == "cuda"
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        assert_close_scaled(out, reference(image, coords, step, case[5], padding), tol,
                            f"{backend} forward {case}")


@pytest.mark.parametrize(
    "dtype,padding",
    [(torch.float64, "reflection"), (torch.float32, "reflection"), (torch.float64, "zeros")],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_first_and_second_order_match_reference(backend, dtype, padding):
    require(backend)
    for case in (ODD, MID):
        inputs = make_inputs(case, dtype, requires_grad=True)
        ref_inputs = tuple(t.detach().double().requires_grad_() for t in inputs)
        p = case[5]
        got = first_and_second_order(run(backend, padding, p), *inputs)
        want = first_and_second_order(
            lambda i, c, s, p=p: reference(i, c, s, p, padding), *ref_inputs
        )
        tol = 1e-11 if dtype == torch.float64 else 3e-4
        for order, (g_got, g_want) in enumerate(zip(got, want, strict=True), start=1):
            for name, a, b in zip(("image", "coords", "step"), g_got, g_want, strict=True):
                assert a.dtype == dtype
                assert_close_scaled(a, b, tol, f"{backend} order {order} d/d{name} {case}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_coordinate_hessian_only_path(backend):
    require(backend)
    image, coords, step = make_inputs(MID, torch.float64)
    results = []
    for fn in (run(backend, "reflection", 9), lambda i, c, s: reference(i, c, s, 9, "reflection")):
        c = coords.detach().clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(image, c, step).sum(), c, create_graph=True)
        (hess,) = torch.autograd.grad((grad * grad).sum(), c)
        results.append((grad, hess))
    for got, want in zip(results[0], results[1], strict=True):
        assert_close_scaled(got, want, 1e-11, f"{backend} coordinate Hessian")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_and_gradgradcheck(backend):
    require(backend)
    inputs = make_inputs((1, 2, 4, 3, 3, 3, 1.5), torch.float64, requires_grad=True)
    gradcheck_atomic(run(backend, "reflection", 3), inputs)


def grid_sample_patches(image, coords, step, patch_size, padding):
    """PyTorch's path: an explicit patch grid fed to F.grid_sample (bicubic, a = -0.75)."""
    batch, channels, height, width = image.shape
    offsets = torch.arange(patch_size, dtype=coords.dtype, device=coords.device)
    offsets = offsets - (patch_size - 1) / 2
    gx = coords[..., 0, None, None] + (offsets * step[0] * (2.0 / width))[None, None, None, :]
    gy = coords[..., 1, None, None] + (offsets * step[1] * (2.0 / height))[None, None, :, None]
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)
    grid = grid.reshape(batch, -1, patch_size * patch_size, 2)
    return torch.nn.functional.grid_sample(
        image, grid, mode="bicubic", padding_mode=padding, align_corners=False
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_error_within_twice_grid_sample(backend, dtype):
    require(backend)
    image, coords, step = make_inputs((2, 3, 64, 64, 512, 9, 0.95), torch.float64)
    out = funknn_fast.patch_sample(image.to(dtype), coords.float(), step.float(), 9, "border",
                                   backend=backend)
    assert out.dtype == dtype
    ours = float((out.double() - reference(image, coords, step, 9, "border")).abs().max())
    low = grid_sample_patches(image.to(dtype), coords.to(dtype), step.to(dtype), 9, "border")
    high = grid_sample_patches(image, coords, step, 9, "border")
    theirs = float((low.double() - high).abs().max())
    assert ours <= 2 * theirs, f"{backend} {dtype}: error {ours:.3g} vs grid_sample {theirs:.3g}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_gradients(backend):
    require(backend)
    image, coords, step = make_inputs(MID, torch.float64)
    inputs = (image.to(torch.bfloat16).requires_grad_(), coords.float().requires_grad_(),
              step.float().requires_grad_())
    out = run(backend, "reflection", 9)(*inputs)
    grads = torch.autograd.grad(out.float().square().sum(), inputs)
    assert [g.dtype for g in grads] == [torch.bfloat16, torch.float32, torch.float32]
    ref_inputs = tuple(t.detach().double().requires_grad_() for t in inputs)
    ref_grads = torch.autograd.grad(reference(*ref_inputs, 9, "reflection").square().sum(),
                                    ref_inputs)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_close_scaled(got, want, 3e-2, f"{backend} bfloat16 gradient")


def test_backends_agree_at_benchmark_scale():
    """8 images of 3 x 128 x 128, 8192 queries, p = 9: triton, cuda and the CPU kernels agree."""
    available = [b for b in ("triton", "cuda") if backends()[b].available]
    if not available:
        pytest.skip("no GPU backend available")
    results, cpu_backend = benchmark_scale_results(
        lambda i, c, s, backend: funknn_fast.patch_sample(i, c, s, 9, "reflection",
                                                          backend=backend),
        (8, 1024, 3, 9, 9), available,
    )
    for backend in available:
        for name, got, want in zip(("out", "image", "coords", "step"), results[backend],
                                   results[cpu_backend], strict=True):
            assert_close_scaled(got, want.double(), 1e-4, f"{backend} vs {cpu_backend} {name}")


def test_deterministic_mode():
    """Triton: bitwise reproducible image gradients; CUDA C++: refuses (atomics only)."""
    image, coords, step = make_inputs(MID, torch.float32, requires_grad=True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        if backends()["triton"].available:
            fn = run("triton", "reflection", 9)
            runs = [first_and_second_order(fn, image, coords, step) for _ in range(2)]
            for order in range(2):
                for a, b in zip(runs[0][order], runs[1][order], strict=True):
                    assert torch.equal(a, b)
        if backends()["cuda"].available:
            out = run("cuda", "reflection", 9)(image, coords, step)
            with pytest.raises(RuntimeError, match="deterministic"):
                torch.autograd.grad(out.sum(), image)
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_coordinates_and_empty_queries(backend):
    require(backend)
    image, coords, step = make_inputs(ODD, torch.float32)
    coords = coords.clone()
    coords[0, 1, 0] = float("nan")
    coords[1, 2, 1] = float("-inf")
    out = run(backend, "zeros", 9)(image, coords, step)
    assert torch.isnan(out[0, 1]).all() and torch.isnan(out[1, 2]).all()
    finite = torch.ones(out.shape[:2], dtype=torch.bool, device=DEVICE)
    finite[0, 1] = finite[1, 2] = False
    assert torch.isfinite(out[finite]).all()
    empty = run(backend, "border", 9)(image, coords[:, :0], step)
    assert empty.shape == (2, 0, 2, 9, 9)


def test_opcheck_on_cuda():
    image, coords, step = make_inputs((1, 2, 3, 2, 2, 2, 1.5), torch.float64, requires_grad=True)
    grad_out = torch.randn(1, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    directions = (torch.randn_like(image), torch.randn_like(coords), torch.randn_like(step))
    namespaces = []
    if backends()["triton"].available:
        from funknn_fast.kernels import patch_sample_triton as pst

        namespaces.append((pst.forward_op, pst.backward_op, pst.double_backward_op))
    if backends()["cuda"].available:
        ops = torch.ops.funknn_fast
        namespaces.append((ops.patch_sample.default, ops.patch_sample_backward.default,
                           ops.patch_sample_double_backward.default))
    if not namespaces:
        pytest.skip("no GPU backend available")
    for forward, backward, double_backward in namespaces:
        torch.library.opcheck(forward, (image, coords, step, 2, 2))
        with torch.no_grad():
            args = (grad_out, image.detach(), coords.detach(), step.detach())
            torch.library.opcheck(backward, args + (2, 0, [True, True, True]))
            torch.library.opcheck(double_backward, args + directions + (2, 1, [True] * 4))


@pytest.mark.parametrize("layout", ["channels_last", "strided", "expanded"])
def test_opcheck_on_cuda_odd_layouts(layout):
    """Fake and real strides agree (all results contiguous) for any input layout (issue 14)."""
    from _backend_cases import odd_layouts, permuted_like

    base = make_inputs((2, 3, 3, 4, 2, 2, 1.5), torch.float64, requires_grad=True)
    image, coords, step = odd_layouts(*base)[layout]
    grad_out = permuted_like(torch.randn(2, 2, 3, 2, 2, dtype=torch.float64, device=DEVICE))
    namespaces = []
    if backends()["triton"].available:
        from funknn_fast.kernels import patch_sample_triton as pst

        namespaces.append((pst.forward_op, pst.backward_op, pst.double_backward_op))
    if backends()["cuda"].available:
        ops = torch.ops.funknn_fast
        namespaces.append((ops.patch_sample.default, ops.patch_sample_backward.default,
                           ops.patch_sample_double_backward.default))
    if not namespaces:
        pytest.skip("no GPU backend available")
    directions = odd_layouts(*(torch.randn_like(t) for t in base))[layout]
    for forward, backward, double_backward in namespaces:
        torch.library.opcheck(forward, (image, coords, step, 2, 2))
        with torch.no_grad():
            args = (grad_out, image.detach(), coords.detach(), step.detach())
            torch.library.opcheck(backward, args + (2, 0, [True, True, True]))
            torch.library.opcheck(backward, args + (2, 0, [False, True, True]))
            torch.library.opcheck(double_backward, args + tuple(directions) + (2, 1, [True] * 4))


def test_no_host_synchronisation_in_op_jets_and_model():
    """No device-to-host synchronisation in the forward and backward of the op (first and second
    order), of the jets, of FunkNN's training step and of its GPU inference path (issue 14):
    ``torch.cuda.set_sync_debug_mode("error")`` raises on any (after a warm-up that compiles the
    kernels)."""
    from funknn_fast.models.funknn import FunkNN
    from funknn_fast.models.gpu_inference import FunkNNInference
    from funknn_fast.ops.jets import patch_sample_jets

    available = [b for b in BACKENDS if backends()[b].available]
    if not available:
        pytest.skip("no GPU backend available")
    image, coords, step = make_inputs(MID, torch.float32, requires_grad=True)
    model = FunkNN(channels=3).to(DEVICE)
    engine = FunkNNInference(model, chunk=128, precision="bfloat16", graphs=True)
    # Cotangents made on the device: a copy from pageable host memory synchronises.
    weights = torch.randn(2, 257, 3, 9, 9, device=DEVICE)
    directions = [torch.randn_like(t) for t in (image, coords, step)]

    def work():
        for backend in available:
            out = run(backend, "reflection", 9)(image, coords, step)
            first = torch.autograd.grad(out, (image, coords, step), weights, create_graph=True)
            total = sum((g * v).sum() for g, v in zip(first, directions, strict=True))
            torch.autograd.grad(total, (image, coords, step))
            jets = patch_sample_jets(image, coords, step, 5, "reflection", "laplacian", backend)
            torch.autograd.grad(jets.square().sum(), (image, coords, step))
        out = model(coords, image.detach())
        torch.autograd.grad(out.square().sum(), list(model.parameters()))
        engine(coords.detach(), image.detach())

    work()
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        work()
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("backend", BACKENDS)
def test_tensors_on_a_second_device(backend):
    """Tensors on cuda:1 while cuda:0 is current: the kernels run on cuda:1 (issue 14)."""
    require(backend)
    inputs = [t.to("cuda:1") for t in make_inputs(MID, torch.float64, requires_grad=True)]
    inputs = [t.detach().requires_grad_() for t in inputs]
    with torch.cuda.device(0):
        got = first_and_second_order(run(backend, "reflection", 9), *inputs)
        out = run(backend, "reflection", 9)(*inputs)
    assert out.device == torch.device("cuda:1")
    cpu = [t.detach().cpu().double().requires_grad_() for t in inputs]
    assert_close_scaled(out.cpu(), reference(*cpu, 9, "reflection"), 1e-12, "cuda:1 forward")
    want = first_and_second_order(lambda i, c, s: reference(i, c, s, 9, "reflection"), *cpu)
    for g_got, g_want in zip(got, want, strict=True):
        for a, b in zip(g_got, g_want, strict=True):
            assert_close_scaled(a.cpu(), b, 1e-11, f"{backend} cuda:1 derivatives")
