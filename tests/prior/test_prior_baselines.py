"""Iterative TV baselines, the sparse CT matrix and the bicubic ablation field (issue 16)."""

import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F

from funknn_fast.prior import solvers
from funknn_fast.prior.baselines import (
    BicubicField,
    difference_matrix,
    pdhg_tv,
    radon_matrix,
    total_variation,
    tv_ct,
    tv_poisson,
)
from funknn_fast.prior.metrics import shift_invariant_snr, snr
from funknn_fast.prior.phantoms import phantom_parameters, rasterize
from funknn_fast.prior.poisson import poisson_integrate, poisson_system
from funknn_fast.prior.radon import (
    detector_positions,
    full_angles,
    image_function,
    limited_angles,
    radon,
)

EDGE = 0.15



def test_radon_matrix_is_the_solvers_ct_forward_model():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    angles = limited_angles(7)
    positions = detector_positions(23, math.sqrt(2.0), torch.float64)
    expected = radon(image_function(image), angles, positions, 2, samples_per_ray=16)
    matrix = radon_matrix(angles, positions, 16, 16)
    got = torch.sparse.mm(matrix, image.reshape(2, -1).T).T.reshape(2, 1, 7, 23)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)  # measured 6.7e-16


def test_difference_matrix_gives_total_variation():
    image = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1),
                       dtype=torch.float64)
    tv = np.abs(difference_matrix(5) @ image.reshape(-1).numpy()).sum() / (5 * 4)
    assert tv == pytest.approx(total_variation(image).item(), rel=1e-12)


def test_total_variation():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    assert total_variation(image).item() == pytest.approx((1 + 2) / 2 + (2 + 3) / 2)


def test_pdhg_without_tv_reaches_the_least_squares_solution():
    """Weighted least squares (no TV, no bound) against the sparse normal equations: relative
    error 1.3e-5 measured after 2,000 iterations."""
    generator = np.random.default_rng(0)
    size = 6
    matrix = difference_matrix(size)
    matrix = matrix[: matrix.shape[0] - 3]  # drop a few rows: still one constant free
    data = generator.normal(size=matrix.shape[0])
    weights = generator.uniform(0.5, 2.0, size=matrix.shape[0])
    start = np.zeros(size * size)
    solution, objective = pdhg_tv(matrix, data, weights, size, 0.0, 2000, start, False)
    normal = (matrix.T @ (weights[:, None] * matrix.toarray())) + 1e-9 * np.eye(size * size)
    exact = spla.lsqr(normal, matrix.T @ (weights * data), atol=1e-14, btol=1e-14)[0]
    solution, exact = solution - solution.mean(), exact - exact.mean()
    assert np.linalg.norm(solution - exact) < 1e-4 * np.linalg.norm(exact)
    assert objective[-1] <= objective[0]


def test_tv_ct_recovers_an_image_from_complete_noise_free_data():
    """Full angles, data simulated by the forward model, no TV: 38.97 dB after 1,000
    iterations measured (33.5 after 300); the result is non-negative. With the model scaled by
    1.1, or the data term's sign flipped, it cannot reach this."""
    truth = rasterize(phantom_parameters([0], "test"), 16, EDGE)
    angles, positions = full_angles(30), detector_positions(23, math.sqrt(2.0), torch.float64)
    sinogram = radon(image_function(truth.double()), angles, positions, 1,
                     samples_per_ray=16).float()
    estimate, objective = tv_ct(sinogram, angles.float(), positions.float(), 16, 0.0,
                                iterations=1000)
    assert estimate.shape == (1, 1, 16, 16) and (estimate >= 0).all()
    assert snr(estimate, truth).item() > 37.5
    assert objective[-1] < 1e-6 * objective[0]


def test_tv_ct_trades_data_fit_for_smaller_total_variation():
    """With limited angles and 30 dB noise, a larger weight lowers TV(u) and raises the data
    misfit (the two terms of the objective move in opposite directions)."""
    config = solvers.SolveConfig(size=16, angles=20)
    problem = solvers.make_problem("ct", phantom_parameters([3], "test"), config, EDGE)
    results = [tv_ct(problem.sinogram, problem.angles, problem.positions, 16, weight, 500)[0]
               for weight in (1e-4, 1e-2)]
    tvs = [total_variation(image).item() for image in results]
    matrix = radon_matrix(problem.angles, problem.positions, 16, 16).float()
    misfits = [(torch.sparse.mm(matrix, image.reshape(-1, 1)).reshape(problem.sinogram.shape)
                - problem.sinogram).pow(2).sum().item() for image in results]
    assert tvs[1] < 0.9 * tvs[0] and misfits[1] > misfits[0]


def test_tv_poisson_without_tv_is_poisson_and_with_tv_denoises():
    """Weight 0 keeps the Poisson solution (max difference 4.2e-5 after 400 iterations, for
    values up to 0.89). On gradients with 30% noise, the weight 0.1 raises the SI-SNR of the
    sparse (20%) problem by 0.21 dB after 1,000 iterations (measured, n = 24)."""
    config = solvers.SolveConfig(size=24)
    problem = solvers.make_problem("sparse-derivatives", phantom_parameters([0], "test"), config,
                                   EDGE)
    gradients = problem.gradients.reshape(1, 24, 24, 2).permute(0, 3, 1, 2)
    noise = torch.randn(gradients.shape, generator=torch.Generator().manual_seed(0))
    noisy = gradients + 0.3 * gradients.pow(2).mean().sqrt() * noise
    mask = problem.mask.reshape(1, 24, 24)
    poisson = poisson_integrate(noisy, mask)
    same, _ = tv_poisson(noisy, mask, 0.0, iterations=400)
    torch.testing.assert_close(same, poisson, atol=1e-4, rtol=0)
    denoised, _ = tv_poisson(noisy, mask, 0.1, iterations=1000)
    gain = (shift_invariant_snr(denoised, problem.truth) - shift_invariant_snr(poisson,
                                                                               problem.truth))
    assert 0.15 < gain.item() < 0.3, gain


def test_poisson_system_is_the_matrix_of_the_baseline():
    generator = np.random.default_rng(2)
    gradient = generator.normal(size=(2, 5, 5))
    mask = generator.uniform(size=(5, 5)) < 0.7
    matrix, target, weight = poisson_system(gradient, mask, 0.5)
    assert matrix.shape == (40, 25) and target.shape == weight.shape == (40,)
    assert set(np.unique(weight)) <= {0.5, 1.0}
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 0.0)  # differences


def test_bicubic_field_is_grid_sample_and_twice_differentiable():
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 9, 9, generator=generator, dtype=torch.float64)
    coords = torch.rand(2, 50, 2, generator=generator, dtype=torch.float64) * 2.2 - 1.1
    expected = F.grid_sample(images, coords.unsqueeze(1), mode="bicubic", padding_mode="zeros",
                             align_corners=False)[:, :, 0].transpose(1, 2)
    field = BicubicField(3)
    torch.testing.assert_close(field(coords, images), expected, rtol=1e-12, atol=1e-12)
    # d/dx by autograd against central differences, and d/d(images) of it exists
    images.requires_grad_(True)
    points = coords.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(field(points, images)[..., 0].sum(), points,
                                      create_graph=True)
    step = torch.zeros_like(coords)
    step[..., 0] = 1e-6
    numeric = (field(coords + step, images) - field(coords - step, images))[..., 0] / 2e-6
    torch.testing.assert_close(gradient[..., 0], numeric.detach(), rtol=1e-5, atol=1e-6)
    (second,) = torch.autograd.grad(gradient.pow(2).sum(), images)
    assert torch.isfinite(second).all() and second.abs().sum() > 0
