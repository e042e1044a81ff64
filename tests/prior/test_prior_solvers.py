"""Inverse-problem solvers on tiny problems: observations, baselines, gradients, loss decrease."""

import math

import pytest
import torch

from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior import solvers
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.baselines import BicubicField
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import ContinuousPrior
from funknn_fast.prior.metrics import snr
from funknn_fast.prior.phantoms import ellipse_function, phantom_parameters, pixel_centers
from funknn_fast.prior.radon import (
    detector_positions,
    full_angles,
    image_function,
    limited_angles,
    radon,
)

EDGE = 0.15


def tiny_prior() -> ContinuousPrior:
    torch.manual_seed(0)
    return ContinuousPrior(AutoEncoder(16, (4, 4), 4), LatentFlow(4, 1, (8,)),
                           FunkNN(channels=1, variant="mlp")).eval()


def test_observations():
    config = solvers.SolveConfig(size=16, angles=12, sparse_fraction=0.25)
    params = phantom_parameters([0, 1], "test")
    dense = solvers.make_problem("derivatives", params, config, EDGE)
    assert dense.gradients.shape == (2, 256, 2) and dense.mask.all()
    torch.testing.assert_close(dense.gradients,
                               solvers.phantom_gradients(params, dense.coords, EDGE))
    sparse = solvers.make_problem("sparse-derivatives", params, config, EDGE)
    assert sparse.mask.sum(1).tolist() == [64, 64]
    kept = sparse.gradients.norm(dim=-1)
    assert (kept[sparse.mask].reshape(2, -1).min(1).values
            >= kept.masked_fill(sparse.mask, -1).max(1).values).all()
    ct = solvers.make_problem("ct", params, config, EDGE)
    assert ct.sinogram.shape == (2, 1, 12, math.ceil(16 * math.sqrt(2)))
    torch.testing.assert_close(ct.angles[[0, -1]], torch.tensor([-70.0, 70.0]).deg2rad())
    noise_snr = snr(ct.sinogram, ct.extra["clean_sinogram"])
    assert ((noise_snr > 28.5) & (noise_snr < 31.5)).all(), noise_snr
    with pytest.raises(ValueError, match="problem"):
        solvers.make_problem("mri", params, config, EDGE)


def test_baselines_recover_the_phantoms_to_their_measured_quality():
    """Measured (deterministic): Poisson SI-SNR 23.54 dB (dense); FBP SNR 9.32 dB at 60 limited
    angles (30 dB noise) and 24.87 dB from exact projections over 180 degrees (90 angles),
    where a 5% amplitude error gives 21.77 dB and a 15% one 16.49 dB."""
    config = solvers.SolveConfig(size=24, angles=60)
    params = phantom_parameters([2], "test")
    dense = solvers.make_problem("derivatives", params, config, EDGE)
    score = solvers.metrics(solvers.baseline(dense), dense.truth)["si_snr"][0]
    assert 23.2 < score < 23.9, score
    ct = solvers.make_problem("ct", params, config, EDGE)
    limited = solvers.metrics(solvers.baseline(ct), ct.truth)["snr"][0]
    assert 9.0 < limited < 9.6, limited
    ct.angles = full_angles(90).float()
    ct.sinogram = radon(lambda c: ellipse_function(params, c, EDGE), full_angles(90),
                        ct.positions.double(), 1, samples_per_ray=48).float()
    full = solvers.metrics(solvers.baseline(ct), ct.truth)["snr"][0]
    assert 24.5 < full < 25.2, full


def test_ct_observations_agree_with_the_solvers_forward_model():
    """The sinogram of the continuous phantom (exact integration + 30 dB noise) against the
    solver's model (the phantom on the n x n grid, bilinear, n samples per ray): normalised
    misfit 1.10e-3 measured (the noise alone: 1.02e-3); a 5% scale error gives 3.39e-3."""
    config = solvers.SolveConfig(size=32, angles=20)
    problem = solvers.make_problem("ct", phantom_parameters([1], "test"), config, EDGE)
    model = radon(image_function(problem.truth), problem.angles, problem.positions, 1,
                  samples_per_ray=config.size)
    misfit = ((model - problem.sinogram).pow(2).sum() / problem.sinogram.pow(2).sum()).item()
    assert 1.0e-3 < misfit < 1.25e-3, misfit


def test_forward_mode_gradient_matches_autograd():
    torch.manual_seed(1)
    model = FunkNN(channels=1, variant="mlp").double()
    image = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    coords = torch.rand(1, 20, 2, dtype=torch.float64) * 1.6 - 0.8

    class Wrapped(torch.nn.Module):
        def forward(self, c, i):
            return model(c, i)

    torch.testing.assert_close(solvers.spatial_gradient(model, coords, image),
                               solvers.spatial_gradient(Wrapped(), coords, image))


def range_problem(kind: str, prior: ContinuousPrior, z_star: torch.Tensor,
                  config: solvers.SolveConfig) -> solvers.Problem:
    """Noise-free observations of ``prior`` at ``z_star`` through the solver's own forward model
    (CT: the rendered image on the n x n grid; derivatives: FunkNN's exact gradients)."""
    n = config.size
    with torch.no_grad():
        low = prior.generate(z_star)
        truth = prior.render(low, n)
    problem = solvers.Problem(kind, torch.zeros(1, 3, 6, dtype=torch.float64), truth)
    if kind == "ct":
        problem.angles = limited_angles(config.angles).float()
        problem.positions = detector_positions(config.detector_bins, math.sqrt(2.0))
        with torch.no_grad():
            problem.sinogram = radon(image_function(truth), problem.angles, problem.positions,
                                     1, samples_per_ray=n)
        return problem
    coords = pixel_centers(n, 1)
    gradients = solvers.spatial_gradient(prior.funknn, coords, low).detach()
    mask = torch.ones(1, n * n, dtype=torch.bool)
    if kind == "sparse-derivatives":
        keep = round(config.sparse_fraction * n * n)
        largest = gradients.norm(dim=-1).topk(keep, dim=1).indices
        mask = torch.zeros_like(mask).scatter_(1, largest, True)
    problem.coords, problem.gradients, problem.mask = coords, gradients, mask
    return problem


@pytest.mark.parametrize("kind", solvers.PROBLEMS)
def test_the_solver_recovers_a_latent_in_the_range_of_the_prior(kind):
    """Data simulated from G(z*) (FunkNN on a random tiny generator), z from 0 by the z stage:
    measured |z - z*| = 3.7e-3 (CT), 8.8e-4 (dense), 1.2e-3 (sparse) for |z*| = 2.74, and
    SNR(FunkNN(G(z)), FunkNN(G(z*))) = 65.5 / 79.8 / 74.2 dB. Wrong sign or scale of the data
    term (e.g. the model's sinogram or gradients times 1.1) cannot get there."""
    prior = tiny_prior()
    z_star = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    config = solvers.SolveConfig(size=12, angles=10, z_steps=150, z_lr=0.05, finetune_steps=0,
                                 queries=None, tv_weight=0.0)
    problem = range_problem(kind, prior, z_star, config)
    result = solvers.solve(problem, prior, config)
    assert (result["z"] - z_star).norm().item() < 1e-2
    assert solvers.metrics(result["estimate"], problem.truth)["snr"][0] > 55.0
    assert result["losses"]["z"][-1] < 1e-5 * result["losses"]["z"][0]  # measured <= 2.0e-6


def test_total_variation():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    assert solvers.total_variation(image).item() == pytest.approx((1 + 2) / 2 + (2 + 3) / 2)


@pytest.mark.parametrize("kind", solvers.PROBLEMS)
def test_solve_reduces_the_loss(kind):
    prior = tiny_prior()
    config = solvers.SolveConfig(size=12, z_steps=6, z_lr=0.1, finetune_steps=4,
                                 finetune_lr=1e-3, queries=64, angles=8)
    problem = solvers.make_problem(kind, phantom_parameters([3], "test"), config, EDGE)
    calls = []
    result = solvers.solve(problem, prior, config, lambda *a: calls.append(a))
    losses = result["losses"]
    assert len(losses["z"]) == 6 and len(losses["finetune"]) == 4 and len(calls) == 10
    assert losses["finetune"][-1] < losses["z"][0]
    assert result["estimate"].shape == (1, 1, 12, 12)
    with pytest.raises(ValueError, match="single-image"):
        solvers.solve(solvers.make_problem(kind, phantom_parameters([0, 1]), config, EDGE),
                      prior, config)


class SmoothInterpolant(torch.nn.Module):
    """A stand-in for a trained FunkNN: Gaussian-weighted average of the pixels (any order
    differentiable), ``(coords (B, Q, 2), images (B, C, d, d)) -> (B, Q, C)``."""

    channels = 1

    def forward(self, coords, images):
        d = images.shape[-1]
        axis = (2.0 * torch.arange(d, dtype=coords.dtype) + 1.0) / d - 1.0
        dx = coords[..., 0, None] - axis  # (B, Q, d) columns
        dy = coords[..., 1, None] - axis  # rows
        width = 1.2 / d  # 0.6 pixel
        wx, wy = torch.exp(-0.5 * (dx / width) ** 2), torch.exp(-0.5 * (dy / width) ** 2)
        weights = wy[..., :, None] * wx[..., None, :]  # (B, Q, d, d)
        values = (weights[:, :, None] * images[:, None]).sum((-2, -1))
        return values / weights.sum((-2, -1))[..., None]


def test_warm_start_loss_and_target():
    torch.manual_seed(2)
    target = torch.randn(1, 1, 6, 6)
    target = target - target.mean()
    images = torch.randn(1, 1, 6, 6)
    loss = solvers.warm_start_loss(images, target)
    # Only the constant is free: adding one changes nothing, the target itself fits exactly.
    assert solvers.warm_start_loss(images + 3.0, target).item() == pytest.approx(loss.item())
    assert solvers.warm_start_loss(target + 0.7, target).item() < 1e-12
    assert loss.item() > 0.5
    config = solvers.SolveConfig(size=16)
    problem = solvers.make_problem("derivatives", phantom_parameters([5], "test"), config, EDGE)
    pooled = solvers.warm_start_target(problem, 8)
    expected = torch.nn.functional.avg_pool2d(solvers.baseline(problem), 2)
    torch.testing.assert_close(pooled, expected - expected.mean())


@pytest.mark.parametrize("kind", ["derivatives", "sparse-derivatives"])
def test_warm_start_lowers_the_data_loss_below_the_zero_start(kind):
    torch.manual_seed(0)
    prior = ContinuousPrior(AutoEncoder(8, (4,), 4), LatentFlow(4, 1, (8,)), SmoothInterpolant())
    size = 16
    params = phantom_parameters([5], "test")
    problem = solvers.make_problem(kind, params, solvers.SolveConfig(size=size), EDGE)
    every = solvers.SolveConfig(size=size, queries=None)

    def final_loss(**stages):
        config = solvers.SolveConfig(size=size, queries=None, z_steps=0, finetune_steps=0,
                                     **stages)
        result = solvers.solve(problem, prior, config)
        loss = solvers.data_loss(problem, prior, result["low_res"], every, torch.Generator())
        return loss.item(), result

    zero, _ = final_loss()
    warm, result = final_loss(init_steps=30, init_finetune_steps=150, init_finetune_lr=3e-3)
    assert len(result["losses"]["init"]) == 30 and len(result["losses"]["init_finetune"]) == 150
    for phase in ("init", "init_finetune"):
        assert result["losses"][phase][-1] < result["losses"][phase][0]
    # The true low-resolution phantom bounds what this field can do; the warm start gets there.
    truth = solvers.rasterize(params, 8, EDGE, supersample=2)
    floor = solvers.data_loss(problem, prior, truth, every, torch.Generator()).item()
    assert warm < 0.75 * zero and warm < 1.1 * floor, (warm, zero, floor)
    assert solvers.metrics(truth, result["low_res"])["si_snr"][0] > 10


def test_problem_defaults_and_stage_order():
    dense = solvers.default_config("derivatives", z_steps=3)
    assert dense.init_steps > 0 and dense.init_finetune_steps > 0 and dense.z_steps == 3
    assert solvers.default_config("sparse-derivatives").init_steps > 0
    # CT: the dataclass defaults but for the decoder steps chosen on validation (issue 16)
    assert solvers.default_config("ct") == solvers.SolveConfig(finetune_steps=300)
    # sparse gradients: 200 decoder steps at 3e-4, re-chosen on validation for the wide AE
    sparse = solvers.default_config("sparse-derivatives")
    assert (sparse.finetune_steps, sparse.finetune_lr) == (200, 3e-4)
    with pytest.raises(ValueError, match="problem"):
        solvers.default_config("mri")
    with pytest.raises(ValueError, match="init_finetune_lr"):
        solvers.SolveConfig(init_finetune_lr=0.0)
    prior = tiny_prior()
    config = solvers.SolveConfig(size=12, init_steps=2, z_steps=3, init_finetune_steps=4,
                                 finetune_steps=5, queries=32)
    problem = solvers.make_problem("derivatives", phantom_parameters([5], "test"), config, EDGE)
    calls = []
    result = solvers.solve(problem, prior, config, lambda *a: calls.append(a[:2]))
    phases = [phase for phase, step in calls]
    assert phases == ["init"] * 2 + ["z"] * 3 + ["init_finetune"] * 4 + ["finetune"] * 5
    assert len(calls) == config.total_steps
    assert {k: len(v) for k, v in result["losses"].items()} == {
        "init": 2, "z": 3, "init_finetune": 4, "finetune": 5}


def test_ct_direct_integrates_funknn_along_the_rays():
    prior = tiny_prior()
    config = solvers.SolveConfig(size=12, angles=4, ct_direct=True)
    problem = solvers.make_problem("ct", phantom_parameters([4], "test"), config, EDGE)
    z = torch.zeros(1, 4, requires_grad=True)
    loss = solvers.data_loss(problem, prior, prior.generate(z), config, torch.Generator())
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    grid = solvers.data_loss(problem, prior, prior.generate(z),
                             solvers.SolveConfig(size=12, angles=4), torch.Generator())
    assert abs(loss.item() - grid.item()) < 0.2 * grid.item()


def test_funknn_of_baseline_averages_to_the_generator_resolution():
    prior = tiny_prior()  # generator resolution 16
    low = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    blocky = low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 32^2, 2x2 blocks
    rendered = solvers.funknn_of_baseline(blocky, prior, 20)
    assert rendered.shape == (2, 1, 20, 20)
    torch.testing.assert_close(rendered, prior.render(low, 20))
    assert not torch.allclose(rendered, prior.render(blocky[..., :16, :16], 20))


def test_sparse_loss_adds_the_tv_of_the_generator_image():
    """The sparse-derivative loss is the gradient misfit plus ``tv_weight * TV(G)``, exactly."""
    prior = tiny_prior()
    config = solvers.SolveConfig(size=12, queries=None, tv_weight=0.0)
    problem = solvers.make_problem("sparse-derivatives", phantom_parameters([2], "test"), config,
                                   EDGE)
    images = prior.generate(torch.randn(1, 4, generator=torch.Generator().manual_seed(4)))
    plain = solvers.data_loss(problem, prior, images, config, torch.Generator())
    weighted = solvers.data_loss(problem, prior, images,
                                 solvers.SolveConfig(size=12, queries=None, tv_weight=0.5),
                                 torch.Generator())
    expected = plain + 0.5 * solvers.total_variation(images)
    torch.testing.assert_close(weighted, expected, rtol=1e-6, atol=0)
    assert solvers.total_variation(images).item() > 1e-3


def test_detail_snr_scores_the_inside_of_the_body_only():
    """Affine changes do not count; an image flat inside the body scores 0 dB; otherwise the
    definition, computed here with numpy on the mask."""
    params = phantom_parameters([0, 1], "test")
    truth = solvers.rasterize(params, 32, EDGE)
    mask = solvers.body_mask(params, 32)
    assert mask.shape == (2, 1024) and 0.2 < mask.double().mean() < 0.5
    assert min(solvers.detail_snr(3.0 * truth + 1.0, truth, params)) > 100
    flat = torch.where(mask.reshape(2, 1, 32, 32), torch.tensor(0.8), truth)
    assert solvers.detail_snr(flat, truth, params) == pytest.approx([0.0, 0.0], abs=1e-9)
    noisy = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(5))
    for k, score in enumerate(solvers.detail_snr(noisy, truth, params)):
        x = truth[k].reshape(-1)[mask[k]].double().numpy()
        y = noisy[k].reshape(-1)[mask[k]].double().numpy()
        x, y = x - x.mean(), y - y.mean()
        a = (x @ y) / (y @ y)
        assert score == pytest.approx(10 * math.log10((x @ x) / ((x - a * y) ** 2).sum()))


def test_ablation_methods_run_what_they_name():
    """bicubic: the solver renders G(z) by bicubic interpolation, not FunkNN; warm-start: only
    the warm-start stages run (CT too); zero-start: no warm start; fbp / funknn-of-baseline:
    no optimisation."""
    prior = tiny_prior()
    problem = solvers.make_problem("derivatives", phantom_parameters([1], "test"),
                                   solvers.SolveConfig(size=12), EDGE)
    config = solvers.default_config("derivatives", "bicubic", size=12, init_steps=2,
                                    init_finetune_steps=2, finetune_steps=2, queries=16)
    result = solvers.run_method("bicubic", problem, prior, config)
    low = result["low_res"]
    bicubic = solvers.with_field(prior, BicubicField(1)).render(low, 12)
    torch.testing.assert_close(result["estimate"], bicubic)
    assert (result["estimate"] - prior.render(low, 12)).abs().max() > 1e-3
    for kind in solvers.PROBLEMS:
        warm = solvers.default_config(kind, "warm-start", size=12)
        assert warm.z_steps == warm.finetune_steps == 0 and warm.init_steps > 0
        zero = solvers.default_config(kind, "zero-start", size=12)
        assert zero.init_steps == zero.init_finetune_steps == 0 and zero.z_steps > 0
    warm = solvers.default_config("ct", "warm-start", size=12, angles=4, init_steps=2,
                                  init_finetune_steps=3)
    ct = solvers.make_problem("ct", phantom_parameters([1], "test"), warm, EDGE)
    losses = solvers.run_method("warm-start", ct, prior, warm)["losses"]
    assert {k: len(v) for k, v in losses.items()} == {"init": 2, "z": 0, "init_finetune": 3,
                                                      "finetune": 0}
    direct = solvers.run_method("funknn-of-baseline", ct, prior, warm)
    torch.testing.assert_close(direct["estimate"], solvers.funknn_of_baseline(
        solvers.baseline(ct), prior, 12))
    with pytest.raises(ValueError, match="method"):
        solvers.run_method("tv", problem, prior, config)
