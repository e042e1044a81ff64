"""Tests of ``funknn_fast.derivatives``: forward-mode jets of FunkNN against autograd.

Oracle: autograd double backward (triple for parameter gradients) through the model with the
pure-PyTorch reference backend and the explicit module path, float64, on random ReLU and sin
models, random images and random coordinates; and central finite differences.
"""

from __future__ import annotations

import pytest
import torch

from funknn_fast import backends
from funknn_fast.derivatives import funknn_derivatives, network_jets
from funknn_fast.models.funknn import FunkNN

BACKENDS = ["torch"] + (["cpu"] if backends()["cpu"].available else [])


def make_model(variant: str, activation: str, seed: int, channels: int = 2) -> FunkNN:
    torch.manual_seed(seed)
    model = FunkNN(channels=channels, variant=variant, activation=activation, patch_size=5,
                   backend="torch", fused=False).double()
    with torch.no_grad():
        model.step.copy_(torch.tensor([0.8, 1.3]))
        if activation == "sin":  # keep the test well conditioned: moderate frequencies
            for module in model.modules():
                if hasattr(module, "w0"):
                    module.w0.fill_(3.0)
    return model


def make_inputs(seed: int, channels: int = 2, batch: int = 2, queries: int = 3):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, channels, 6, 7, generator=generator, dtype=torch.float64)
    coords = torch.rand(batch, queries, 2, generator=generator, dtype=torch.float64) * 2.2 - 1.1
    return image, coords


def autograd_derivatives(model, coords, image, create_graph=False):
    """Value (B,Q,C), gradient (B,Q,C,2), Hessian (B,Q,C,2,2) by autograd double backward."""
    coords = coords.detach().clone().requires_grad_()
    out = model(coords, image)
    gradients, hessians = [], []
    for c in range(out.shape[-1]):
        (grad,) = torch.autograd.grad(out[..., c].sum(), coords, create_graph=True)
        rows = [torch.autograd.grad(grad[..., a].sum(), coords, create_graph=create_graph,
                                    retain_graph=True)[0] for a in range(2)]
        gradients.append(grad if create_graph else grad.detach())
        hessians.append(torch.stack(rows, dim=-2))
    return out, torch.stack(gradients, dim=2), torch.stack(hessians, dim=2)


def assert_close(actual, expected, atol=1e-10):
    scale = max(1.0, float(expected.detach().abs().max()))
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol * scale)


@pytest.mark.parametrize("variant", ["cnn", "mlp"])
@pytest.mark.parametrize("activation", ["relu", "sin"])
def test_matches_autograd_double_backward(variant, activation):
    model = make_model(variant, activation, seed=1)
    image, coords = make_inputs(2)
    value, gradient, hessian = autograd_derivatives(model, coords, image)
    laplacian = hessian[..., 0, 0] + hessian[..., 1, 1]
    for backend in BACKENDS:
        d = funknn_derivatives(model, coords, image, order="hessian", backend=backend)
        assert d.hessian.shape == (2, 3, 2, 2, 2)
        assert_close(d.value, value.detach())
        assert_close(d.gradient, gradient)
        assert_close(d.hessian, hessian)
        assert_close(d.laplacian, laplacian)
        lap = funknn_derivatives(model, coords, image, order="laplacian", backend=backend, chunk=2)
        assert lap.hessian is None
        assert_close(lap.value, value.detach())
        assert_close(lap.gradient, gradient)
        assert_close(lap.laplacian, laplacian)
        first = funknn_derivatives(model, coords, image, order="gradient", backend=backend)
        assert first.laplacian is None and first.hessian is None
        assert_close(first.gradient, gradient)


@pytest.mark.parametrize("activation", ["relu", "sin"])
def test_matches_finite_differences(activation):
    """Central differences of the value and of the jets gradient (small steps: few kinks hit)."""
    model = make_model("cnn", activation, seed=3, channels=1)
    image, coords = make_inputs(4, channels=1)
    d = funknn_derivatives(model, coords, image, order="hessian")
    eps = 1e-7
    with torch.no_grad():
        for axis in range(2):
            shift = torch.zeros_like(coords)
            shift[..., axis] = eps
            plus, minus = model(coords + shift, image), model(coords - shift, image)
            assert_close((plus - minus) / (2 * eps), d.gradient[..., axis], 1e-6)
            grad_plus = funknn_derivatives(model, coords + shift, image, order="gradient")
            grad_minus = funknn_derivatives(model, coords - shift, image, order="gradient")
            column = (grad_plus.gradient - grad_minus.gradient) / (2 * eps)
            assert_close(column, d.hessian[..., axis], 1e-6)


@pytest.mark.parametrize("activation", ["relu", "sin"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_differentiable_in_parameters_and_image(activation, backend):
    """A loss on gradients and Laplacians: its gradient w.r.t. every parameter and the image."""
    model = make_model("cnn", activation, seed=5, channels=1)
    image, coords = make_inputs(6, channels=1, batch=1, queries=3)
    image.requires_grad_()
    weights = torch.randn(1, 3, 1, 2, dtype=torch.float64)

    def loss_of(value, gradient, laplacian):
        curvature = (laplacian * weights[..., 0]).square().sum()
        return (gradient * weights).sum() + curvature + value.sum()

    _, gradient, hessian = autograd_derivatives(model, coords, image, create_graph=True)
    value = model(coords, image)
    expected_loss = loss_of(value, gradient, hessian[..., 0, 0] + hessian[..., 1, 1])
    params = [image, *model.parameters()]
    expected = torch.autograd.grad(expected_loss, params)
    d = funknn_derivatives(model, coords, image, order="laplacian", backend=backend)
    actual = torch.autograd.grad(loss_of(d.value, d.gradient, d.laplacian), params)
    assert_close(loss_of(d.value, d.gradient, d.laplacian).detach(), expected_loss.detach())
    assert float(expected[1].abs().sum()) > 0  # the step parameter is exercised
    for a, e in zip(actual, expected, strict=True):
        assert_close(a, e, 1e-9)


def test_output_pixel_units():
    model = make_model("mlp", "relu", seed=7)
    image, coords = make_inputs(8)
    ref = funknn_derivatives(model, coords, image, order="hessian")
    height, width = 12, 20
    sx, sy = 2 / width, 2 / height
    for order in ("laplacian", "hessian"):
        d = funknn_derivatives(model, coords, image, order=order, output_size=(height, width))
        assert_close(d.gradient, ref.gradient * torch.tensor([sx, sy], dtype=torch.float64))
        h = ref.hessian
        assert_close(d.laplacian, h[..., 0, 0] * sx**2 + h[..., 1, 1] * sy**2)
    assert_close(d.hessian[..., 0, 1], h[..., 0, 1] * sx * sy)
    square = funknn_derivatives(model, coords, image, order="laplacian", output_size=(8, 8))
    assert_close(square.laplacian, ref.laplacian * (2 / 8) ** 2)


def test_fused_float32_model_and_chunks():
    torch.manual_seed(9)
    model = FunkNN(channels=3)  # defaults: CNN, ReLU, p = 9, fused forward
    generator = torch.Generator().manual_seed(10)
    image = torch.randn(2, 3, 8, 8, generator=generator)
    coords = torch.rand(2, 5, 2, generator=generator) * 2 - 1
    with torch.no_grad():
        d = funknn_derivatives(model, coords, image, chunk=3)
        whole = funknn_derivatives(model, coords, image, chunk=None)
        torch.testing.assert_close(d.value, model(coords, image), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d.laplacian, whole.laplacian)
    torch.testing.assert_close(d.gradient, whole.gradient)


@pytest.mark.parametrize("variant", ["cnn", "mlp"])
@pytest.mark.parametrize("activation", ["relu", "sin"])
def test_network_jets_inference_mode_matches_grad_mode(variant, activation):
    """Without autograd: in-place kernels (ReLU: one component at a time); same values."""
    model = make_model(variant, activation, seed=11)
    jets = torch.randn(4, 3, 2, 5, 5, dtype=torch.float64)
    with_grad = network_jets(model, jets)
    with torch.inference_mode():
        without = network_jets(model, jets.clone())
    torch.testing.assert_close(with_grad.detach(), without)


def test_argument_errors():
    model = make_model("mlp", "relu", seed=12)
    image, coords = make_inputs(13)
    with pytest.raises(ValueError, match="order"):
        funknn_derivatives(model, coords, image, order="third")
    with pytest.raises(ValueError, match="output_size"):
        funknn_derivatives(model, coords, image, output_size=(0, 4))
    with pytest.raises(ValueError, match="channels"):
        funknn_derivatives(model, coords, image[:, :1])
    with pytest.raises(ValueError, match="chunk"):
        funknn_derivatives(model, coords, image, chunk=0)
    with pytest.raises(TypeError, match="FunkNN"):
        funknn_derivatives(torch.nn.Linear(2, 2), coords, image)


def test_cli_derivatives_writes_maps(tmp_path):
    import numpy as np
    from PIL import Image

    from funknn_fast.cli import main
    from funknn_fast.cli.derivatives import derivative_maps
    from funknn_fast.models.checkpoint import save_model

    torch.manual_seed(14)
    model = FunkNN(channels=3, variant="mlp", patch_size=5)
    stem = tmp_path / "weights"
    save_model(model, stem)
    pixels = (np.random.default_rng(15).random((6, 5, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    out, npy = tmp_path / "maps.png", tmp_path / "maps.npy"
    code = main(["derivatives", str(tmp_path / "in.png"), "--scale", "2", "-o", str(out),
                 "--weights", str(stem), "--npy", str(npy), "--chunk", "7"])
    assert code == 0
    assert Image.open(out).size == (2 * 10 + 4, 12)
    maps = np.load(npy)
    assert maps.shape == (2, 12, 10) and np.isfinite(maps).all()
    # The maps are the model's derivatives per output pixel at the 12 x 10 pixel centres.
    image = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)
    coords = torch.stack(torch.meshgrid((torch.arange(12) * 2 + 1) / 12 - 1,
                                        (torch.arange(10) * 2 + 1) / 10 - 1, indexing="ij")[::-1],
                         dim=-1).reshape(1, -1, 2)
    d = funknn_derivatives(model.eval(), coords, image[None], output_size=(12, 10))
    np.testing.assert_allclose(maps[1].ravel(), d.laplacian[0].mean(-1).detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    magnitude, _ = derivative_maps(model, image, 12, 10, chunk=50)
    np.testing.assert_allclose(maps[0], magnitude, rtol=1e-5, atol=1e-6)
    assert main(["derivatives", str(tmp_path / "missing.png"), "-o", str(out),
                 "--weights", str(stem)]) == 2
    assert main(["derivatives", str(tmp_path / "in.png"), "-o", str(out), "--scale", "0",
                 "--weights", str(stem)]) == 2
