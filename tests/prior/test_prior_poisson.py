"""Least-squares Poisson integration of gradients (the derivative-inversion baseline)."""

import pytest
import torch

from funknn_fast.prior.metrics import shift_invariant_snr
from funknn_fast.prior.phantoms import pixel_centers
from funknn_fast.prior.poisson import poisson_integrate


def _smooth(n: int, batch: int = 2):
    coords = pixel_centers(n, batch, torch.float64).requires_grad_(True)
    x, y = coords[..., 0], coords[..., 1]
    phase = torch.arange(batch, dtype=torch.float64).unsqueeze(1)
    values = torch.sin(2 * x + phase) * torch.cos(3 * y) + 0.5 * x * x * y
    (gradient,) = torch.autograd.grad(values.sum(), coords)
    image = values.detach().reshape(batch, 1, n, n)
    return image, gradient.reshape(batch, n, n, 2).permute(0, 3, 1, 2)


def test_recovers_a_smooth_function_from_its_exact_gradients():
    image, gradients = _smooth(32)
    estimate = poisson_integrate(gradients)
    assert (shift_invariant_snr(estimate, image) > 45).all()
    torch.testing.assert_close(estimate.mean(dim=(1, 2, 3)), torch.zeros(2, dtype=torch.float64))


def test_linear_functions_are_integrated_exactly():
    n = 12
    coords = pixel_centers(n, 1, torch.float64)
    image = (0.7 * coords[..., 0] - 1.3 * coords[..., 1]).reshape(1, 1, n, n)
    gradients = torch.stack([torch.full((n, n), 0.7), torch.full((n, n), -1.3)]).double()
    estimate = poisson_integrate(gradients.unsqueeze(0))
    torch.testing.assert_close(estimate, image - image.mean(), atol=1e-6, rtol=0)


def test_mask_of_all_points_equals_no_mask_and_missing_points_degrade_gracefully():
    image, gradients = _smooth(24, batch=1)
    full = poisson_integrate(gradients)
    everything = torch.ones(1, 24, 24, dtype=torch.bool)
    torch.testing.assert_close(poisson_integrate(gradients, everything), full)
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(1, 24, 24, generator=generator) < 0.6
    partial = poisson_integrate(gradients, mask, missing_weight=1e-3)
    score = shift_invariant_snr(partial, image)
    assert 15 < score.item() <= shift_invariant_snr(full, image).item() + 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError, match="gradients"):
        poisson_integrate(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="mask"):
        poisson_integrate(torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool))
