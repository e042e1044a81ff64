"""Shared-computation grid rendering (grid_render) equals per-query evaluation of the model."""

import pytest
import torch

from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.lattice import HEAD_MACS, TRUNK_MACS_PER_POINT, per_query_macs
from funknn_fast.superres import grid_render
from funknn_fast.superres.grid_render import render_grid, share_plan
from funknn_fast.superres.inference import render

# (input (h, w), output (H, W)): x2, x3, x4, x8, x1.5, x3.5, a non-square size, a downscale
CASES = [
    ((6, 7), (12, 14)),
    ((5, 6), (15, 18)),
    ((5, 4), (20, 16)),
    ((3, 4), (24, 32)),
    ((8, 6), (12, 9)),
    ((4, 6), (14, 21)),
    ((7, 5), (17, 12)),
    ((9, 8), (6, 4)),
]
# measured max |shared - per-query| / max |per-query|: float32 <= 2e-6, float64 <= 5e-15
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}

pytestmark = pytest.mark.usefixtures("one_thread")


def random_lattice_model(dtype, padding="reflection", seed=0):
    """A lattice FunkNN with weights perturbed away from their initialisation (a non-trivial
    function: the head's output is of the order of the image)."""
    torch.manual_seed(seed)
    model = FunkNN(3, "lattice", padding=padding).to(dtype)
    with torch.no_grad():
        for param in model.lattice.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def per_query(model, image, size):
    with torch.inference_mode():
        return render(model, image, size=size, chunk=37, shared=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("in_size", "out_size"), CASES)
def test_shared_equals_per_query(in_size, out_size, dtype):
    model = random_lattice_model(dtype)
    image = torch.rand(1, 3, *in_size, dtype=dtype, generator=torch.Generator().manual_seed(1))
    expected = per_query(model, image, out_size)
    assert expected.abs().max() > 0.3 and (expected - expected.mean()).abs().max() > 0.1
    for tile in (2, 64):  # tiles cut the classes (2) or hold them whole (64)
        with torch.inference_mode():
            got = render_grid(model, image, out_size, tile=tile)
        error = float((got - expected).abs().max() / expected.abs().max())
        assert error < TOLERANCE[dtype], (in_size, out_size, tile, error)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_shared_follows_the_padding_rule(padding):
    model = random_lattice_model(torch.float64, padding)
    image = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    expected = per_query(model, image, (15, 9))
    with torch.inference_mode():
        got = render_grid(model, image, (15, 9), tile=3)
    assert float((got - expected).abs().max()) < 1e-10


def test_batch_of_images():
    model = random_lattice_model(torch.float64)
    images = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    with torch.inference_mode():
        got = render_grid(model, images, (8, 10))
    for b in range(2):
        expected = per_query(model, images[b : b + 1], (8, 10))
        assert float((got[b : b + 1] - expected).abs().max()) < 1e-10


def test_render_dispatches_to_the_engine(monkeypatch):
    model = random_lattice_model(torch.float64)
    image = torch.rand(3, 6, 5, dtype=torch.float64)
    expected = per_query(model, image[None], (12, 10))[0]
    calls = []
    original = grid_render.render_grid

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(grid_render, "render_grid", spy)
    model.train()
    got = render(model, image, scale=2.0)
    assert calls and got.shape == (3, 12, 10) and model.training
    assert float((got - expected).abs().max()) < 1e-10
    model.shared_render = False  # what `funknn superres --no-shared` sets
    calls.clear()
    assert float((render(model, image, scale=2.0) - expected).abs().max()) < 1e-10
    assert not calls


def test_share_plan_costs_and_fallback():
    model = FunkNN(3, "lattice")
    x4 = share_plan(model, (256, 256), (1024, 1024))
    assert x4.shared and x4.step == (1, 1) and x4.classes == (4, 4) and x4.per_class == (256, 256)
    assert x4.macs_per_pixel == pytest.approx(TRUNK_MACS_PER_POINT * (72 / 64) ** 2 + HEAD_MACS)
    assert x4.per_query_macs == per_query_macs(3, 9) == 1_383_296
    x15 = share_plan(model, (256, 256), (384, 384))
    assert x15.shared and x15.step == (2, 2) and x15.classes == (3, 3)
    odd = share_plan(model, (256, 256), (845, 845))  # 256 and 845 coprime: one query per class
    assert not odd.shared and odd.macs_per_pixel == odd.per_query_macs
    assert odd.shared_macs_per_pixel > odd.per_query_macs


def test_render_falls_back_per_query(monkeypatch):
    model = random_lattice_model(torch.float64)
    image = torch.rand(3, 7, 5, dtype=torch.float64)

    def refuse(*args, **kwargs):
        raise AssertionError("the plan says per query")

    monkeypatch.setattr(grid_render, "render_grid", refuse)
    assert render(model, image, size=(9, 8)).shape == (3, 9, 8)  # 7 -> 9, 5 -> 8: coprime


def test_errors_name_the_argument():
    image = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="variant='lattice'"):
        render_grid(FunkNN(3, "cnn"), image, (8, 8))
    model = FunkNN(3, "lattice")
    with pytest.raises(ValueError, match="tile"):
        render_grid(model, image, (8, 8), tile=0)
    with pytest.raises(ValueError, match="image"):
        render_grid(model, image[0], (8, 8))
    with pytest.raises(ValueError, match="out_size"):
        render_grid(model, image, (0, 8))
    with torch.no_grad():
        model.step.fill_(0.5)
    with pytest.raises(ValueError, match="unit step"):
        render_grid(model, image, (8, 8))


def test_progress_bar_names_the_render_and_changes_nothing(capsys):
    torch.manual_seed(0)
    model = FunkNN(3, "lattice").eval()
    image = torch.rand(1, 3, 6, 5)
    with torch.inference_mode():
        quiet = render_grid(model, image, (12, 10))
        loud = render_grid(model, image, (12, 10), progress=True)
    assert torch.equal(quiet, loud)
    assert "render 12x10" in capsys.readouterr().err
