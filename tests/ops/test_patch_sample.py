"""patch_sample on the "torch" and "cpu" backends against the contract, and its derivatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from contract_oracle import patch_sample_oracle
from torch.autograd import gradcheck, gradgradcheck

import funknn_fast
from funknn_fast import patch_sample
from funknn_fast.ops.padding import PADDING_CODES

PADDINGS = sorted(PADDING_CODES)
BACKENDS = ["torch", "cpu"]
# (B, C, H, W, Q, p): tiny images, non-square, p in {1, 2, 3, 9}.
SHAPES = [
    (1, 1, 1, 1, 3, 3),
    (2, 3, 1, 4, 4, 2),
    (1, 2, 3, 2, 5, 1),
    (2, 1, 2, 3, 3, 9),
    (1, 3, 5, 7, 4, 3),
    (2, 5, 6, 4, 3, 2),
]


def random_case(shape, dtype, seed, spread=3.0):
    batch, channels, height, width, queries, _ = shape
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)
    coords = (torch.rand(batch, queries, 2, generator=gen, dtype=dtype) * 2 - 1) * spread
    step = torch.rand(2, generator=gen, dtype=dtype) * 1.5 + 0.2
    return image, coords, step


def test_cpu_extension_is_built():
    status = funknn_fast.backends()["cpu"]
    assert status.available, status.reason


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_contract_float64(backend, padding, shape):
    image, coords, step = random_case(shape, torch.float64, seed=hash((padding, shape)) % 1000)
    coords[0, 0] = torch.tensor([7.5, -9.25], dtype=torch.float64)  # far outside [-1, 1]
    out = patch_sample(image, coords, step, shape[-1], padding, backend=backend)
    expected = patch_sample_oracle(
        image.numpy(), coords.numpy(), tuple(step.tolist()), shape[-1], padding
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_float32_relative_error(backend, padding):
    shape = (2, 3, 9, 6, 20, 9)
    image, coords, step = random_case(shape, torch.float64, seed=7, spread=2.0)
    expected = patch_sample_oracle(image.numpy(), coords.numpy(), tuple(step.tolist()), 9, padding)
    out = patch_sample(image.float(), coords.float(), step.float(), 9, padding, backend=backend)
    assert out.dtype == torch.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("padding", PADDINGS)
def test_cpu_gradcheck_and_gradgradcheck(padding):
    image, coords, step = random_case((2, 2, 5, 4, 3, 3), torch.float64, seed=3)
    inputs = tuple(t.clone().requires_grad_() for t in (image, coords, step))

    def fn(img, crd, stp):
        return patch_sample(img, crd, stp, 3, padding, backend="cpu")

    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("padding", PADDINGS)
def test_cpu_derivatives_match_reference(padding):
    """First and second derivatives for every pair of inputs, against autograd on "torch"."""
    image, coords, step = random_case((2, 3, 6, 5, 7, 4), torch.float64, seed=11)
    weights = torch.randn(2, 7, 3, 4, 4, dtype=torch.float64)
    results = {}
    for backend in BACKENDS:
        img, crd, stp = (t.clone().requires_grad_() for t in (image, coords, step))
        out = patch_sample(img, crd, stp, 4, padding, backend=backend)
        first = torch.autograd.grad((out * weights).sum(), (img, crd, stp), create_graph=True)
        second = []
        for grad in first:
            direction = torch.randn(
                grad.shape,
                dtype=torch.float64,
                generator=torch.Generator().manual_seed(grad.numel()),
            )
            second.extend(
                torch.autograd.grad(
                    (grad * direction).sum(), (img, crd, stp), retain_graph=True, allow_unused=True
                )
            )
        results[backend] = (first, second)
    for a, b in zip(results["cpu"][0], results["torch"][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    for a, b in zip(results["cpu"][1], results["torch"][1]):
        a = torch.zeros_like(b) if a is None and b is not None else a
        b = torch.zeros_like(a) if b is None and a is not None else b
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_cpu_coordinate_hessian_matches_reference():
    image, coords, step = random_case((1, 2, 7, 6, 3, 3), torch.float64, seed=5)

    def energy(backend):
        return lambda c: patch_sample(image, c, step, 3, "reflection", backend=backend).sin().sum()

    hess_cpu = torch.autograd.functional.hessian(energy("cpu"), coords)
    hess_ref = torch.autograd.functional.hessian(energy("torch"), coords)
    assert hess_cpu.abs().max() > 0
    torch.testing.assert_close(hess_cpu, hess_ref, rtol=0, atol=1e-10)


def test_third_order_on_cpu_raises_clear_error():
    image, coords, step = random_case((1, 1, 4, 4, 2, 3), torch.float64, seed=2)
    coords.requires_grad_()
    out = patch_sample(image, coords, step, 3, backend="cpu")
    (g,) = torch.autograd.grad(out.pow(2).sum(), coords, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), coords, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(h.sum(), coords)


def test_image_gradient_is_deterministic():
    image, coords, step = random_case((2, 3, 8, 8, 500, 9), torch.float32, seed=4, spread=1.0)
    grads = []
    for _ in range(2):
        img = image.clone().requires_grad_()
        patch_sample(img, coords, step, backend="cpu").pow(2).sum().backward()
        grads.append(img.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_coords_give_nan_samples_only_there(backend):
    image, coords, step = random_case((1, 2, 5, 5, 4, 3), torch.float64, seed=9, spread=1.0)
    coords[0, 1, 0] = float("nan")
    coords[0, 2, 1] = float("inf")
    for padding in PADDINGS:
        out = patch_sample(image, coords, step, 3, padding, backend=backend)
        assert torch.isnan(out[0, 1]).all() and torch.isnan(out[0, 2]).all()
        assert torch.isfinite(out[0, 0]).all() and torch.isfinite(out[0, 3]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_coordinates_are_finite(backend):
    image, coords, step = random_case((1, 1, 4, 3, 3, 2), torch.float32, seed=1)
    coords[0] = torch.tensor([[1e30, -1e30], [3e12, 2.5e9], [-7e7, 1e5]])
    out = patch_sample(image, coords, step, 2, "reflection", backend=backend)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_queries_return_empty_result(backend):
    image = torch.rand(2, 3, 4, 4, requires_grad=True)
    coords = torch.zeros(2, 0, 2, requires_grad=True)
    out = patch_sample(image, coords, 1.0, 5, backend=backend)
    assert out.shape == (2, 0, 3, 5, 5)
    out.sum().backward()
    assert image.grad.shape == image.shape and torch.all(image.grad == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_forms_agree(backend):
    image, coords, _ = random_case((1, 2, 5, 6, 3, 3), torch.float64, seed=6)
    as_pair = patch_sample(image, coords, (0.8, 0.8), 3, backend=backend)
    for step in (
        0.8,
        [0.8, 0.8],
        torch.tensor(0.8, dtype=torch.float64),
        torch.tensor([0.8, 0.8], dtype=torch.float64),
    ):
        torch.testing.assert_close(patch_sample(image, coords, step, 3, backend=backend), as_pair)


def test_non_contiguous_inputs():
    image, coords, step = random_case((2, 3, 6, 7, 5, 3), torch.float64, seed=8)
    image_nc = image.transpose(2, 3).contiguous().transpose(2, 3)
    coords_nc = torch.stack((coords[..., 0], coords[..., 1]), dim=1).transpose(1, 2)
    assert not image_nc.is_contiguous() and not coords_nc.is_contiguous()
    torch.testing.assert_close(
        patch_sample(image_nc, coords_nc, step, 3, backend="cpu"),
        patch_sample(image, coords, step, 3, backend="torch"),
    )


def test_opcheck_registered_ops():
    ops = torch.ops.funknn_fast
    for seed, (shape, dtype) in enumerate(
        [
            ((1, 1, 3, 4, 2, 3), torch.float64),
            ((2, 3, 5, 5, 3, 2), torch.float32),
            ((2, 5, 2, 1, 4, 1), torch.float64),
        ]
    ):
        image, coords, step = random_case(shape, dtype, seed=seed)
        p = shape[-1]
        for padding in PADDING_CODES.values():
            for requires_grad in (False, True):
                args = [t.clone().requires_grad_(requires_grad) for t in (image, coords, step)]
                torch.library.opcheck(ops.patch_sample, (*args, p, padding))
            grad_out = torch.randn(shape[0], shape[4], shape[1], p, p, dtype=dtype)
            torch.library.opcheck(
                ops.patch_sample_backward,
                (grad_out, image, coords, step, p, padding, [True, True, True]),
            )
            torch.library.opcheck(
                ops.patch_sample_double_backward,
                (
                    grad_out,
                    image,
                    coords,
                    step,
                    torch.randn_like(image),
                    torch.randn_like(coords),
                    torch.randn_like(step),
                    p,
                    padding,
                    [True, True, True, True],
                ),
            )


@pytest.mark.parametrize("layout", ["channels_last", "strided", "expanded"])
def test_opcheck_registered_ops_on_odd_layouts(layout):
    """The C++ ops' fake results have their real strides for any input layout (issue 14)."""
    from _backend_cases import odd_layouts, permuted_like

    ops = torch.ops.funknn_fast
    base = random_case((2, 3, 4, 5, 3, 3), torch.float64, seed=21)
    image, coords, step = odd_layouts(*base)[layout]
    for requires_grad in (False, True):
        args = [t.detach().requires_grad_(requires_grad) for t in (image, coords, step)]
        torch.library.opcheck(ops.patch_sample, (*args, 3, 2))
    grad_out = permuted_like(torch.randn(2, 3, 3, 3, 3, dtype=torch.float64))
    for mask in ([True, True, True], [False, True, True], [True, False, False]):
        torch.library.opcheck(ops.patch_sample_backward,
                              (grad_out, image, coords, step, 3, 0, mask))
    directions = odd_layouts(*(torch.randn_like(t) for t in base))[layout]
    for mask in ([True] * 4, [False, True, False, True]):
        torch.library.opcheck(ops.patch_sample_double_backward,
                              (grad_out, image, coords, step, *directions, 3, 1, mask))


def test_torch_compile_fullgraph_with_second_order():
    image, coords, step = random_case((1, 2, 6, 6, 4, 3), torch.float64, seed=12)

    def laplacian_energy(img, crd):
        out = patch_sample(img, crd, step, 3, "reflection", backend="cpu")
        return out.pow(2).sum()

    compiled = torch.compile(laplacian_energy, backend="aot_eager", fullgraph=True)
    eager = laplacian_energy(image, coords)
    torch.testing.assert_close(compiled(image, coords), eager)
    crd = coords.clone().requires_grad_()
    (g_compiled,) = torch.autograd.grad(compiled(image, crd), crd)
    (g_eager,) = torch.autograd.grad(laplacian_energy(image, crd), crd)
    torch.testing.assert_close(g_compiled, g_eager)


def test_torch_compile_inductor_forward():
    image, coords, step = random_case((1, 2, 6, 6, 4, 3), torch.float32, seed=13)

    def fn(img, crd):
        return patch_sample(img, crd, step, 3, backend="cpu") * 2 + 1

    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(image, coords), fn(image, coords))
