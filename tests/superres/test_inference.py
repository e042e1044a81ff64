"""Inference: pixel-centre queries, sizes, chunking, recursion."""

import pytest
import torch
import torch.nn.functional as F

from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.liif import LIIF, LIIFConfig
from funknn_fast.superres.inference import output_size, render, render_liif, render_recursive


class Bilinear(torch.nn.Module):
    """A stand-in 'model': bilinear grid_sample at the queries, (B, Q, 2) -> (B, Q, C)."""

    def forward(self, coords, image):
        out = F.grid_sample(image, coords.unsqueeze(1), mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out[:, :, 0].transpose(1, 2)


def test_render_queries_pixel_centres_any_size():
    torch.manual_seed(0)
    image = torch.rand(3, 5, 7, dtype=torch.float64)
    for size in [(10, 14), (3, 11), (5, 7), (1, 1)]:
        expected = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        for chunk in (1, 7, 1000):
            got = render(Bilinear(), image, size=size, chunk=chunk)
            assert torch.allclose(got, expected, atol=1e-12)
    got = render(Bilinear(), image[None], scale=1.5)
    assert got.shape == (1, 3, 8, 10)  # round(7.5) = 8, round(10.5) = 10


def test_render_matches_model_call_and_downscales():
    torch.manual_seed(1)
    model = FunkNN(3, "cnn").double()
    image = torch.rand(3, 6, 4, dtype=torch.float64)
    out = render(model, image, size=(9, 5), chunk=8)
    ys = (2 * torch.arange(9, dtype=torch.float64) + 1) / 9 - 1
    xs = (2 * torch.arange(5, dtype=torch.float64) + 1) / 5 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack((gx.flatten(), gy.flatten()), 1)[None]
    with torch.no_grad():
        expected = model(coords, image[None])[0].t().reshape(3, 9, 5)
    assert torch.allclose(out, expected, atol=1e-10)
    assert render(model, image, scale=0.5).shape == (3, 3, 2)
    assert model.training  # render restores the mode


def test_render_recursive_doubles_then_fits():
    image = torch.rand(3, 4, 6, dtype=torch.float64)
    calls = []

    class Spy(Bilinear):
        def forward(self, coords, image):
            calls.append(tuple(image.shape[2:]))
            return super().forward(coords, image)

    out = render_recursive(Spy(), image, size=(16, 24), chunk=1000)
    assert out.shape == (3, 16, 24)
    assert calls == [(4, 6), (8, 12)]
    calls.clear()
    assert render_recursive(Spy(), image, scale=3.0).shape == (3, 12, 18)
    assert calls == [(4, 6), (8, 12)]


def test_large_output_is_chunked():
    # 2048 x 2048 output from 256 x 256 through a cheap model: memory bounded by the chunk
    image = torch.rand(1, 256, 256)
    out = render(Bilinear(), image, scale=8.0, chunk=65536)
    assert out.shape == (1, 2048, 2048)
    assert torch.isfinite(out).all()


def test_bad_sizes():
    with pytest.raises(ValueError, match="exactly one"):
        output_size(4, 4)
    with pytest.raises(ValueError, match="exactly one"):
        output_size(4, 4, scale=2.0, size=(8, 8))
    for scale in (0.0, -1.0, float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="scale"):
            output_size(4, 4, scale=scale)
    with pytest.raises(ValueError, match="smaller than 1 pixel"):
        output_size(4, 4, scale=0.01)
    for size in [(0, 3), (3,), (2.5, 3), "8x8"]:
        with pytest.raises(ValueError, match="size"):
            output_size(4, 4, size=size)
    with pytest.raises(ValueError, match="chunk"):
        render(Bilinear(), torch.rand(1, 4, 4), scale=2.0, chunk=0)


def test_render_liif_queries_every_pixel_centre_with_its_cell():
    torch.manual_seed(0)
    model = LIIF(LIIFConfig(encoder_features=4, encoder_blocks=1, hidden=8, hidden_layers=2))
    model = model.double().eval()
    image = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    out = render_liif(model, image[0], size=(6, 9), chunk=7)
    ys = (2 * torch.arange(6, dtype=torch.float64) + 1) / 6 - 1
    xs = (2 * torch.arange(9, dtype=torch.float64) + 1) / 9 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)[None]
    want = model(coords, image, (2 / 9, 2 / 6))[0].t().reshape(3, 6, 9)
    assert out.shape == (3, 6, 9)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert render_liif(model, image, scale=2.0).shape == (1, 3, 8, 10)
    with pytest.raises(ValueError, match="chunk"):
        render_liif(model, image, scale=2.0, chunk=0)


def test_render_in_float64_and_a_dtype_mismatch():
    torch.manual_seed(4)
    model, image = FunkNN(3, "cnn"), torch.rand(3, 5, 6)
    single = render(model, image, scale=2.0)
    double = render(model.double(), image.double(), scale=2.0)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="float32 on cpu but the model is torch.float64"):
        render(model, image, scale=2.0)


def test_render_a_batch_image_by_image():
    torch.manual_seed(5)
    model, images = FunkNN(3, "cnn"), torch.rand(2, 3, 4, 5)
    batch = render(model, images, size=(7, 9), chunk=16)
    assert batch.shape == (2, 3, 7, 9)
    for k in range(2):
        torch.testing.assert_close(batch[k], render(model, images[k], size=(7, 9)))
