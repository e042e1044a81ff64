"""Random-ellipse phantoms: determinism, splits, the continuous function and rasterization."""

import math

import pytest
import torch

from funknn_fast.prior.phantoms import (
    EllipsePhantoms,
    ellipse_function,
    phantom_parameters,
    pixel_centers,
    rasterize,
)


def test_parameters_are_deterministic_per_index_and_split():
    a = phantom_parameters([0, 5, 7], "train", seed=3)
    b = phantom_parameters([7], "train", seed=3)
    assert torch.equal(a[2], b[0])
    assert torch.equal(a, phantom_parameters([0, 5, 7], "train", seed=3))
    assert not torch.equal(a, phantom_parameters([0, 5, 7], "test", seed=3))
    assert not torch.equal(a, phantom_parameters([0, 5, 7], "train", seed=4))


def test_parameters_stay_in_the_unit_disc():
    params = phantom_parameters(range(200), "train")
    used = params[..., 3] > 0
    reach = params[..., 1:3].norm(dim=-1) + torch.maximum(params[..., 3], params[..., 4])
    assert used[:, :2].all()
    assert reach[used].max() < 1.0


def test_sharp_ellipse_matches_an_independent_inside_test():
    generator = torch.Generator().manual_seed(0)
    rho, cx, cy, a, b, phi = 0.7, 0.1, -0.2, 0.5, 0.25, 0.6
    params = torch.tensor([[[rho, cx, cy, a, b, phi], [0.0] * 6]], dtype=torch.float64)
    coords = torch.rand(1, 2000, 2, generator=generator, dtype=torch.float64) * 2 - 1
    values = ellipse_function(params, coords, edge_width=0.0)[0, :, 0]
    x, y = coords[0, :, 0] - cx, coords[0, :, 1] - cy
    u = x * math.cos(phi) + y * math.sin(phi)
    v = -x * math.sin(phi) + y * math.cos(phi)
    expected = rho * ((u / a) ** 2 + (v / b) ** 2 < 1).double()
    assert torch.equal(values, expected)
    assert 0 < (values > 0).sum() < 2000


def test_smooth_edge_profile_and_exact_gradient():
    params = phantom_parameters([1], "test")
    generator = torch.Generator().manual_seed(1)
    coords = (torch.rand(1, 64, 2, generator=generator, dtype=torch.float64) * 1.6 - 0.8)
    coords.requires_grad_(True)
    values = ellipse_function(params, coords, 0.05)
    (gradient,) = torch.autograd.grad(values.sum(), coords)
    h = 1e-6
    for axis in range(2):
        shift = torch.zeros_like(coords)
        shift[..., axis] = h
        numeric = (ellipse_function(params, coords.detach() + shift, 0.05)
                   - ellipse_function(params, coords.detach() - shift, 0.05))[..., 0] / (2 * h)
        torch.testing.assert_close(gradient[..., axis], numeric, atol=1e-5, rtol=1e-5)
    # a vanishing edge width gives the sharp phantom (no random point lies within 1e-12 of an edge)
    sharp = ellipse_function(params, coords.detach(), 0.0)
    torch.testing.assert_close(ellipse_function(params, coords.detach(), 1e-12), sharp)


def test_rasterize_is_the_mean_of_point_samples():
    params = phantom_parameters([2, 3], "test")
    image = rasterize(params, 8, 0.05, supersample=2, dtype=torch.float64)
    fine = ellipse_function(params, pixel_centers(16, 2, torch.float64), 0.05).reshape(2, 16, 16)
    expected = fine.reshape(2, 8, 2, 8, 2).mean(dim=(2, 4))
    torch.testing.assert_close(image[:, 0], expected)
    assert image.shape == (2, 1, 8, 8)


def test_pixel_centers_follow_grid_sample_convention():
    grid = pixel_centers(4)
    assert grid.shape == (1, 16, 2)
    torch.testing.assert_close(grid[0, 1], torch.tensor([-0.25, -0.75]))


def test_dataset_items_and_bad_arguments():
    data = EllipsePhantoms(3, 16, "test")
    assert len(data) == 3 and data[2].shape == (1, 16, 16)
    assert torch.equal(data[1], data.images([1])[0])
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(ValueError, match="split"):
        phantom_parameters([0], "valid")
    with pytest.raises(ValueError, match="params"):
        ellipse_function(torch.zeros(1, 2, 5), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="edge_width"):
        ellipse_function(torch.zeros(1, 2, 6), torch.zeros(1, 3, 2), -1.0)
