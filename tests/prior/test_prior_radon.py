"""Radon transform of continuous images: closed forms, ray geometry, chunking, gradients."""

import math

import pytest
import torch

from funknn_fast.prior.phantoms import ellipse_function, phantom_parameters
from funknn_fast.prior.radon import (
    detector_positions,
    ellipse_projection,
    full_angles,
    gaussian_function,
    gaussian_projection,
    image_function,
    limited_angles,
    radon,
    ray_points,
)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_ellipse_phantoms_match_the_closed_form_within_one_percent():
    params = phantom_parameters([0, 1], "test")
    angles = full_angles(12)
    positions = detector_positions(48, dtype=torch.float64)
    sinogram = radon(lambda c: ellipse_function(params, c, 0.0), angles, positions, 2,
                     samples_per_ray=256)
    exact = ellipse_projection(params, angles, positions)
    assert sinogram.shape == (2, 1, 12, 48)
    assert _relative_error(sinogram, exact) < 0.01


def test_gaussians_match_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    params = torch.rand(2, 3, 6, generator=generator, dtype=torch.float64)
    params[..., 0] = params[..., 0] * 2 - 1  # amplitude
    params[..., 1:3] = params[..., 1:3] * 0.6 - 0.3  # centre
    params[..., 3:5] = params[..., 3:5] * 0.1 + 0.05  # widths
    params[..., 5] = params[..., 5] * math.pi
    angles = limited_angles(9)
    positions = detector_positions(40, dtype=torch.float64)
    sinogram = radon(lambda c: gaussian_function(params, c), angles, positions, 2,
                     samples_per_ray=128)
    assert _relative_error(sinogram, gaussian_projection(params, angles, positions)) < 1e-4


def test_ray_segments_are_the_chords_of_the_square():
    positions = torch.tensor([-1.2, -0.5, 0.0, 0.9], dtype=torch.float64)
    angles = torch.tensor([0.0, math.pi / 4, math.pi / 2], dtype=torch.float64)
    points, length = ray_points(angles, positions, 4)
    length = length.reshape(3, 4)
    torch.testing.assert_close(length[0], torch.tensor([0.0, 2.0, 2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(length[2], length[0])
    expected = (2.0 * (math.sqrt(2.0) - positions.abs())).clamp_min(0)
    torch.testing.assert_close(length[1], expected)
    inside = points.reshape(3, 4, 4, 2)[length > 0]
    assert inside.abs().max() <= 1.0 + 1e-12


def test_chunks_and_checkpointing_do_not_change_values_or_gradients():
    params = torch.tensor([[[1.0, 0.1, 0.0, 0.2, 0.1, 0.3]]], dtype=torch.float64,
                          requires_grad=True)
    angles = full_angles(5)
    positions = detector_positions(16, dtype=torch.float64)

    def run(**kwargs):
        sinogram = radon(lambda c: gaussian_function(params, c), angles, positions,
                         samples_per_ray=32, **kwargs)
        (grad,) = torch.autograd.grad((sinogram**2).sum(), params)
        return sinogram.detach(), grad

    reference = run(chunk_size=1 << 20)
    for kwargs in ({"chunk_size": 64}, {"chunk_size": 100, "checkpoint": True}):
        value, grad = run(**kwargs)
        torch.testing.assert_close(value, reference[0])
        torch.testing.assert_close(grad, reference[1])


def test_gradcheck_through_the_function_parameters():
    params = torch.tensor([[[0.8, 0.1, -0.1, 0.2, 0.15, 0.4]]], dtype=torch.float64,
                          requires_grad=True)
    angles = full_angles(3)
    positions = detector_positions(6, dtype=torch.float64)

    def forward(p):
        return radon(lambda c: gaussian_function(p, c), angles, positions, samples_per_ray=16)

    assert torch.autograd.gradcheck(forward, (params,))


def test_image_function_is_exact_at_pixel_centres_and_zero_outside():
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(2, 1, 5, 7, generator=generator, dtype=torch.float64)
    xs = (2 * torch.arange(7, dtype=torch.float64) + 1) / 7 - 1
    ys = (2 * torch.arange(5, dtype=torch.float64) + 1) / 5 - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1).expand(2, -1, -1)
    values = image_function(image)(coords)
    torch.testing.assert_close(values[..., 0], image.reshape(2, -1))
    far = torch.full((2, 3, 2), 1.5, dtype=torch.float64)
    assert torch.equal(image_function(image)(far), torch.zeros(2, 3, 1, dtype=torch.float64))


def test_bad_arguments():
    positions = detector_positions(4)
    with pytest.raises(ValueError, match="bins"):
        detector_positions(0)
    with pytest.raises(ValueError, match="chunk_size"):
        radon(lambda c: c[..., :1], full_angles(2), positions, samples_per_ray=8, chunk_size=4)
    with pytest.raises(ValueError, match="function must return"):
        radon(lambda c: c[:, :1], full_angles(2), positions, samples_per_ray=8)
