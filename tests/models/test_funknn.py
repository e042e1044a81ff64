"""FunkNN model: parameter counts, layer structure against float64 references, fused path."""

import pytest
import torch
import torch.nn.functional as F

from funknn_fast import patch_sample
from funknn_fast.models.funknn import FunkNN, Sine, count_parameters
from funknn_fast.models.fused_cnn import fused_cnn_patch_network


def test_parameter_counts():
    assert count_parameters(FunkNN(3, "cnn")) == 140_933
    assert count_parameters(FunkNN(3, "mlp")) == 650_885
    model = FunkNN(3, "cnn")
    assert model.step.shape == (2,)
    assert torch.equal(model.step.detach(), torch.ones(2))


def _manual_cnn(model: FunkNN, patches: torch.Tensor) -> torch.Tensor:
    """Independent float64 evaluation with explicit zero padding (bottom/right) and F ops."""
    x = 10.0 * (patches - patches[:, :, 4:5, 4:5])
    for k, conv in enumerate(model.convs):
        padded = F.pad(x, (0, 1, 0, 1))
        y = torch.zeros(x.shape[0], conv.out_channels, x.shape[2], x.shape[3], dtype=x.dtype)
        for di in range(2):
            for dj in range(2):
                window = padded[:, :, di : di + x.shape[2], dj : dj + x.shape[3]]
                y = y + torch.einsum("nchw,oc->nohw", window, conv.weight[:, :, di, dj])
        y = torch.relu(y + conv.bias.view(1, -1, 1, 1))
        x = y + x if k in (1, 2, 4, 5, 6) else y
        if k in (3, 7):
            side = x.shape[2] // 2
            x = x[:, :, : 2 * side, : 2 * side].reshape(x.shape[0], x.shape[1], side, 2, side, 2)
            x = x.amax(dim=(3, 5))
    x = x.flatten(1)
    for k, linear in enumerate(model.linears):
        x = x @ linear.weight.t() + linear.bias
        if k < 3:
            x = torch.relu(x)
    return x


def test_cnn_layers_match_manual_reference():
    torch.manual_seed(1)
    model = FunkNN(3, "cnn").double()
    patches = torch.rand(11, 3, 9, 9, dtype=torch.float64)
    expected = _manual_cnn(model, patches)
    assert torch.allclose(model.patch_network(patches), expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "sin"])
@pytest.mark.parametrize("channels", [1, 3])
def test_fused_matches_module_path(activation, channels):
    torch.manual_seed(2)
    model = FunkNN(channels, "cnn", activation).double()
    patches = torch.randn(13, channels, 9, 9, dtype=torch.float64)
    expected = model.patch_network(patches)
    got = fused_cnn_patch_network(model, patches)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)
    with torch.inference_mode():
        got = fused_cnn_patch_network(model, patches)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("micro", [1, 4, 64])
def test_fused_inference_micro_chunks(micro):
    torch.manual_seed(7)
    model = FunkNN(3, "cnn").double()
    patches = torch.rand(13, 3, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = model.patch_network(patches)
        got = fused_cnn_patch_network(model, patches, micro=micro)
        empty = fused_cnn_patch_network(model, patches[:0], micro=micro)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)
    assert empty.shape == (0, 3)


def test_fused_gradients_match_module_path():
    torch.manual_seed(3)
    model = FunkNN(3, "cnn").double()
    patches = torch.randn(5, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 3, dtype=torch.float64)
    grads_fused = torch.autograd.grad(
        (fused_cnn_patch_network(model, patches) * weights).sum(),
        [patches, *model.parameters()], allow_unused=True)
    grads_module = torch.autograd.grad(
        (model.patch_network(patches) * weights).sum(),
        [patches, *model.parameters()], allow_unused=True)
    for a, b in zip(grads_fused, grads_module, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)


def test_forward_is_network_plus_centre_sample():
    torch.manual_seed(4)
    model = FunkNN(3, "mlp").double()
    with torch.no_grad():
        model.step.copy_(torch.tensor([0.7, 1.3]))
    image = torch.rand(2, 3, 7, 10, dtype=torch.float64)
    coords = torch.rand(2, 6, 2, dtype=torch.float64) * 2.4 - 1.2
    out = model(coords, image)
    assert out.shape == (2, 6, 3)
    patches = patch_sample(image, coords, (0.7, 1.3), 9, "reflection", backend="torch")
    flat = patches.reshape(12, 3, 9, 9)
    expected = (model.patch_network(flat) + flat[:, :, 4, 4]).reshape(2, 6, 3)
    assert torch.allclose(out, expected, atol=1e-12)


def test_forward_fused_and_unfused_agree_and_step_gets_gradient():
    torch.manual_seed(5)
    fused = FunkNN(3, "cnn", fused=True).double()
    plain = FunkNN(3, "cnn", fused=False).double()
    plain.load_state_dict(fused.state_dict())
    image = torch.rand(1, 3, 12, 9, dtype=torch.float64)
    coords = torch.rand(1, 20, 2, dtype=torch.float64) * 2 - 1
    out = fused(coords, image)
    assert torch.allclose(out, plain(coords, image), atol=1e-12)
    out.sum().backward()
    assert fused.step.grad is not None and torch.isfinite(fused.step.grad).all()
    assert fused.step.grad.abs().sum() > 0


@pytest.mark.parametrize(("variant", "activation"), [("cnn", "relu"), ("mlp", "sin")])
def test_gradcheck_through_model_coords(variant, activation):
    torch.manual_seed(6)
    model = FunkNN(1, variant, activation).double()
    image = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    coords = (torch.rand(1, 3, 2, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: model(c, image), (coords,))


def test_sine_and_bad_arguments():
    sine = Sine(30.0)
    x = torch.randn(4)
    assert torch.allclose(sine(x), torch.sin(30.0 * x))
    assert sine.w0.requires_grad
    with pytest.raises(ValueError, match="variant"):
        FunkNN(3, "resnet")
    with pytest.raises(ValueError, match="activation"):
        FunkNN(3, "cnn", "tanh")
    with pytest.raises(ValueError, match="patch_size"):
        FunkNN(3, "cnn", patch_size=8)
    with pytest.raises(ValueError, match="channels"):
        FunkNN(0)
    model = FunkNN(3)
    with pytest.raises(ValueError, match="image must have shape"):
        model(torch.zeros(1, 2, 2), torch.rand(1, 1, 5, 5))
