"""Tests of ``funknn_fast.ops.jets.patch_sample_jets`` (reference and C++ CPU backends).

Oracles: autograd first and second derivatives of ``funknn_fast.ops.reference`` in the coordinates
(float64), central finite differences of ``patch_sample``, and gradcheck of the compiled op.
"""

from __future__ import annotations

import pytest
import torch

from funknn_fast import backends, patch_sample
from funknn_fast.ops.backends import BackendUnavailableError
from funknn_fast.ops.jets import JET_COMPONENTS, patch_sample_jets, patch_sample_jets_reference
from funknn_fast.ops.padding import padding_code
from funknn_fast.ops.reference import patch_sample_reference

PADDINGS = ("reflection", "border", "zeros")
MODES = ("gradient", "laplacian", "hessian")
needs_cpu = pytest.mark.skipif(not backends()["cpu"].available, reason="C++ extension not built")


def random_inputs(seed: int, dtype=torch.float64, batch=2, channels=2, height=7, width=5,
                  queries=3):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, channels, height, width, generator=generator, dtype=dtype)
    coords = torch.rand(batch, queries, 2, generator=generator, dtype=dtype) * 2.6 - 1.3
    step = torch.rand(2, generator=generator, dtype=dtype) * 1.5 + 0.3
    return image, coords, step


def autograd_jets(image, coords, step, patch_size, padding):
    """(6, B, Q, C, p, p) value, first and second coordinate derivatives by double backward."""
    coords = coords.detach().clone().requires_grad_()
    out = patch_sample_reference(image, coords, step, patch_size, padding)
    first = torch.zeros((2, *out.shape), dtype=out.dtype)
    second = torch.zeros((2, 2, *out.shape), dtype=out.dtype)
    channels = out.shape[2]
    for c in range(channels):
        for i in range(patch_size):
            for j in range(patch_size):
                (grad,) = torch.autograd.grad(out[:, :, c, i, j].sum(), coords, create_graph=True)
                first[:, :, :, c, i, j] = grad.detach().permute(2, 0, 1)
                for a in range(2):
                    (hess,) = torch.autograd.grad(grad[..., a].sum(), coords, retain_graph=True)
                    second[a, :, :, :, c, i, j] = hess.permute(2, 0, 1)
    assert torch.allclose(second[0, 1], second[1, 0], rtol=1e-12, atol=1e-12)
    return torch.stack(
        (out.detach(), first[0], first[1], second[0, 0], second[0, 1], second[1, 1])
    )


def assert_close(actual, expected, rel):
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * scale)


@pytest.mark.parametrize("padding", PADDINGS)
def test_reference_matches_autograd_second_derivatives(padding):
    image, coords, step = random_inputs(1)
    expected = autograd_jets(image, coords, step, 3, padding)
    actual = patch_sample_jets_reference(image, coords, step, 3, padding, "hessian")
    assert_close(actual, expected, 1e-12)
    lap = patch_sample_jets_reference(image, coords, step, 3, padding, "laplacian")
    assert_close(lap[3], expected[3] + expected[5], 1e-12)
    grad = patch_sample_jets_reference(image, coords, step, 3, padding, "gradient")
    assert_close(grad, expected[:3], 1e-12)


@needs_cpu
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_cpu_matches_reference(padding, mode):
    image, coords, step = random_inputs(2, height=6, width=9, queries=5)
    expected = patch_sample_jets_reference(image, coords, step, 5, padding, mode)
    actual = patch_sample_jets(image, coords, step, 5, padding, mode, backend="cpu")
    assert actual.shape == (len(JET_COMPONENTS[mode]), 2, 5, 2, 5, 5)
    assert_close(actual, expected, 1e-12)
    torch.testing.assert_close(actual[0], patch_sample(image, coords, step, 5, padding, "cpu"))


@needs_cpu
def test_cpu_float32_close_to_float64():
    image, coords, step = random_inputs(3)
    expected = patch_sample_jets(image, coords, step, 3, derivatives="hessian", backend="cpu")
    actual = patch_sample_jets(image.float(), coords.float(), step.float(), 3,
                               derivatives="hessian", backend="cpu")
    assert actual.dtype == torch.float32
    assert_close(actual.double(), expected, 1e-4)


@needs_cpu
def test_matches_finite_differences_of_patch_sample():
    image, coords, step = random_inputs(4, queries=4)
    eps = 1e-5
    jets = patch_sample_jets(image, coords, step, 3, derivatives="hessian", backend="cpu")
    for axis, first, second in ((0, 1, 3), (1, 2, 5)):
        shift = torch.zeros_like(coords)
        shift[..., axis] = eps
        plus = patch_sample(image, coords + shift, step, 3, backend="cpu")
        minus = patch_sample(image, coords - shift, step, 3, backend="cpu")
        centre = patch_sample(image, coords, step, 3, backend="cpu")
        assert_close((plus - minus) / (2 * eps), jets[first], 1e-7)
        assert_close((plus - 2 * centre + minus) / eps**2, jets[second], 1e-3)
        # mixed derivative: d/dy of the x derivative jets
        other = torch.zeros_like(coords)
        other[..., 1 - axis] = eps
        dx_plus = patch_sample_jets(image, coords + other, step, 3, derivatives="gradient",
                                    backend="cpu")[1 + axis]
        dx_minus = patch_sample_jets(image, coords - other, step, 3, derivatives="gradient",
                                     backend="cpu")[1 + axis]
        assert_close((dx_plus - dx_minus) / (2 * eps), jets[4], 1e-6)


@needs_cpu
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_cpu_backward_matches_reference_autograd(padding, mode):
    image, coords, step = random_inputs(5, height=5, width=8)
    inputs = [t.clone().requires_grad_() for t in (image, coords, step)]
    expected_out = patch_sample_jets_reference(*inputs, 3, padding, mode)
    cotangent = torch.randn_like(expected_out)
    expected = torch.autograd.grad(expected_out, inputs, cotangent)
    actual = torch.autograd.grad(
        patch_sample_jets(*inputs, 3, padding, mode, backend="cpu"), inputs, cotangent
    )
    for a, e in zip(actual, expected, strict=True):
        assert_close(a, e, 1e-12)


@needs_cpu
@pytest.mark.parametrize("mode", MODES)
def test_cpu_gradcheck(mode):
    image, coords, step = random_inputs(6, batch=1, height=4, width=5, queries=2)
    inputs = [t.clone().requires_grad_() for t in (image, coords, step)]
    assert torch.autograd.gradcheck(
        lambda i, c, s: patch_sample_jets(i, c, s, 3, "reflection", mode, backend="cpu"), inputs
    )


@needs_cpu
def test_opcheck_registered_ops():
    for seed, mode in enumerate(range(3)):
        image, coords, step = random_inputs(10 + seed, batch=1, height=4, width=6, queries=2)
        for requires_grad in (False, True):
            args = [t.clone().requires_grad_(requires_grad) for t in (image, coords, step)]
            torch.library.opcheck(
                torch.ops.funknn_fast.patch_sample_jets.default,
                (*args, 3, padding_code("reflection"), mode),
            )
        grad = torch.randn((3, 4, 6)[mode], 1, 2, 2, 3, 3, dtype=torch.float64)
        torch.library.opcheck(
            torch.ops.funknn_fast.patch_sample_jets_backward.default,
            (grad, image, coords, step, 3, padding_code("zeros"), mode, [True, True, True]),
            test_utils=("test_schema", "test_faketensor"),
        )


@needs_cpu
@pytest.mark.parametrize("layout", ["channels_last", "strided", "expanded"])
def test_opcheck_registered_ops_on_odd_layouts(layout):
    """Fake and real strides agree for any input layout (issue 14)."""
    from _backend_cases import odd_layouts, permuted_like

    base = random_inputs(31, batch=2, height=4, width=6, queries=2)
    image, coords, step = odd_layouts(*base)[layout]
    for requires_grad in (False, True):
        args = [t.detach().requires_grad_(requires_grad) for t in (image, coords, step)]
        torch.library.opcheck(torch.ops.funknn_fast.patch_sample_jets.default,
                              (*args, 3, padding_code("reflection"), 1))
    grad = permuted_like(torch.randn(4, 2, 2, 2, 3, 3, dtype=torch.float64))
    for mask in ([True, True, True], [False, True, False]):
        torch.library.opcheck(
            torch.ops.funknn_fast.patch_sample_jets_backward.default,
            (grad, image, coords, step, 3, padding_code("zeros"), 1, mask),
            test_utils=("test_schema", "test_faketensor"),
        )


@needs_cpu
def test_compiled_backward_is_first_order_only():
    image, coords, step = random_inputs(7)
    image.requires_grad_()
    jets = patch_sample_jets(image, coords, step, 3, backend="cpu")
    (grad,) = torch.autograd.grad(jets.square().sum(), image, create_graph=True)
    with pytest.raises(RuntimeError, match="first order"):
        grad.sum().backward()


def test_reference_is_differentiable_to_higher_order():
    image, coords, step = random_inputs(8, batch=1, queries=2)
    coords.requires_grad_()
    jets = patch_sample_jets(image, coords, step, 3, derivatives="hessian", backend="torch")
    (grad,) = torch.autograd.grad(jets[3].sum(), coords, create_graph=True)
    (third,) = torch.autograd.grad(grad.sum(), coords)
    assert torch.isfinite(third).all() and third.abs().sum() > 0


@needs_cpu
def test_edge_cases():
    image, coords, step = random_inputs(9)
    empty = patch_sample_jets(image, coords[:, :0], step, 3, backend="cpu")
    assert empty.shape == (6, 2, 0, 2, 3, 3)
    nan_coords = coords.clone()
    nan_coords[0, 0, 0] = float("nan")
    out = patch_sample_jets(image, nan_coords, step, 3, backend="cpu")
    assert torch.isnan(out[:, 0, 0]).all()
    assert torch.isfinite(out[:, 1]).all()
    far = torch.full_like(coords, 1e15)
    out = patch_sample_jets(image, far, step, 3, backend="cpu")
    assert torch.isfinite(out).all() and (out[1:] == 0).all()


def test_argument_errors():
    image, coords, step = random_inputs(11)
    with pytest.raises(ValueError, match="derivatives"):
        patch_sample_jets(image, coords, step, 3, derivatives="third")
    with pytest.raises(ValueError, match="padding"):
        patch_sample_jets(image, coords, step, 3, padding="wrap")
    with pytest.raises(ValueError, match="coords"):
        patch_sample_jets(image, coords[..., :1], step, 3)
    with pytest.raises(ValueError, match="patch_size"):
        patch_sample_jets(image, coords, step, 0)
    with pytest.raises(BackendUnavailableError, match="jets"):
        patch_sample_jets(image, coords, step, 3, backend="cuda")
