"""Inverse-problem solvers on tiny problems: observations, baselines, gradients, loss decrease."""

import math

import pytest
import torch

from funknn_fast.model import FunkNN
from funknn_fast.prior import solvers
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import ContinuousPrior
from funknn_fast.prior.metrics import snr
from funknn_fast.prior.phantoms import phantom_parameters


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread: the shared test machine is oversubscribed (8-20x slower with 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

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
    noise_snr = snr(ct.extra["clean_sinogram"], ct.sinogram)
    assert ((noise_snr > 28.5) & (noise_snr < 31.5)).all(), noise_snr
    with pytest.raises(ValueError, match="problem"):
        solvers.make_problem("mri", params, config, EDGE)


def test_baselines_recover_the_phantoms_reasonably():
    config = solvers.SolveConfig(size=24, angles=60)
    params = phantom_parameters([2], "test")
    dense = solvers.make_problem("derivatives", params, config, EDGE)
    assert solvers.metrics(dense.truth, solvers.baseline(dense))["si_snr"][0] > 15
    ct = solvers.make_problem("ct", params, config, EDGE)
    assert solvers.baseline(ct).shape == (1, 1, 24, 24)


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


def test_warm_start_fits_the_baseline_first():
    prior = tiny_prior()
    config = solvers.SolveConfig(size=12, init_steps=5, z_steps=1, finetune_steps=0, z_lr=0.1)
    problem = solvers.make_problem("derivatives", phantom_parameters([5], "test"), config, EDGE)
    losses = solvers.solve(problem, prior, config)["losses"]
    assert len(losses["init"]) == 5 and losses["init"][-1] < losses["init"][0]


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
