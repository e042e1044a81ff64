"""The prior package is device-generic: every tensor of every solver path is made on the device
of its inputs (``funknn solve --device``), checked without a GPU.

The trap: inside the prior modules, ``torch``'s factory functions (``arange``, ``zeros``,
``randn``, ``tensor`` ...) called without a ``device=`` (or with ``device=None``) make *meta*
tensors. With the prior and the problem on the CPU, such a tensor meets CPU tensors and the op
fails ("Tensor on device meta is not on the expected device cpu"), or a meta tensor comes out;
a factory that follows its inputs is untouched and the results stay bit-identical. On a GPU the
same factory would have made a CPU tensor in a CUDA computation. numpy results may come back
only through :func:`funknn_fast.prior.poisson.tensor_like` (to the input's device).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior import (
    autoencoder,
    baselines,
    fbp,
    flow,
    generator,
    metrics,
    phantoms,
    poisson,
    radon,
    solvers,
)
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import ContinuousPrior
from funknn_fast.prior.phantoms import phantom_parameters

MODULES = (autoencoder, baselines, fbp, flow, generator, metrics, phantoms, poisson, radon,
           solvers)
FACTORIES = ("arange", "zeros", "ones", "full", "empty", "tensor", "as_tensor", "linspace",
             "logspace", "eye", "rand", "randn", "randint", "randperm")
EDGE = 0.15
# Every method of every problem, a few steps each (warm start, data stages, TV iterations).
STEPS = {"size": 8, "angles": 5, "queries": 16, "init_steps": 2, "z_steps": 2,
         "init_finetune_steps": 2, "finetune_steps": 2, "baseline_steps": 5}


class _UndevicedOnMeta:
    """``torch`` as a prior module sees it under the trap (module docstring)."""

    def __getattr__(self, name: str):
        real = getattr(torch, name)
        if name == "from_numpy":
            return _from_numpy_in_tensor_like_only
        if name not in FACTORIES:
            return real

        def factory(*args, **kwargs):
            if kwargs.get("device") is None:
                kwargs["device"] = "meta"
            return real(*args, **kwargs)

        return factory


def _from_numpy_in_tensor_like_only(array: np.ndarray) -> torch.Tensor:
    caller = sys._getframe(1).f_code
    if caller is not poisson.tensor_like.__code__:
        raise AssertionError(f"torch.from_numpy in {caller.co_name} ({caller.co_filename}): "
                             "bring numpy results back with poisson.tensor_like")
    return torch.from_numpy(array)


@pytest.fixture()
def trap(monkeypatch):
    """Arms the trap in every prior module for the test's duration."""

    def arm():
        for module in MODULES:
            monkeypatch.setattr(module, "torch", _UndevicedOnMeta())

    return arm


def tiny_prior() -> ContinuousPrior:
    torch.manual_seed(0)
    return ContinuousPrior(AutoEncoder(16, (4, 4), 4), LatentFlow(4, 1, (8,)),
                           FunkNN(channels=1, variant="mlp")).eval()


def _every_output(kind: str, prior: ContinuousPrior, params: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """The tensors ``funknn solve`` makes for ``kind`` from phantoms ``params (2, K, 6)``:
    observations, baseline, diagnostics, metrics and every method's estimate (first phantom)."""
    config = solvers.default_config(kind, **STEPS, seed=3)
    problem = solvers.make_problem(kind, params, config, EDGE)
    outputs = {}
    for method in solvers.METHODS[kind]:
        method_config = solvers.default_config(kind, method, **STEPS, seed=3)
        outputs[method] = solvers.run_method(method, problem.select(0), prior,
                                             method_config)["estimate"]
    base = solvers.baseline(problem)
    outputs.update(
        truth=problem.truth,
        observed=problem.sinogram if kind == "ct" else problem.gradients,
        baseline=base,
        projection=solvers.autoencoder_projection(problem, prior, config.size, EDGE),
        funknn_of_baseline=solvers.funknn_of_baseline(base, prior, config.size),
        metrics=torch.tensor(list(solvers.metrics(base, problem.truth, params).values())),
        samples=prior.sample(2, 6, torch.Generator().manual_seed(1)),
        latents=prior.flow.sample(2, torch.Generator().manual_seed(2)),
    )
    return outputs


@pytest.mark.parametrize("kind", solvers.PROBLEMS)
def test_every_solver_path_makes_its_tensors_on_the_inputs_device(kind, trap):
    prior, params = tiny_prior(), phantom_parameters([0, 1], "validation")  # numpy: the CPU
    expected = _every_output(kind, prior, params)
    trap()
    trapped = _every_output(kind, prior, params)
    assert trapped.keys() == expected.keys()
    for name, value in expected.items():
        assert trapped[name].device == value.device == torch.device("cpu"), name
        torch.testing.assert_close(trapped[name], value, rtol=0, atol=0, msg=name)


def test_the_trap_makes_undeviced_factories_meta(trap):
    trap()
    assert radon.torch.arange(3).is_meta and radon.torch.zeros(2, device=None).is_meta
    assert radon.torch.arange(3, device="cpu").device == torch.device("cpu")
    assert solvers.pixel_centers(2, 1).is_meta  # device=None: the caller forgot it
    with pytest.raises(AssertionError, match="tensor_like"):
        radon.torch.from_numpy(np.zeros(1))


@pytest.mark.parametrize("kind", solvers.PROBLEMS)
def test_observations_are_made_on_the_device_of_the_phantoms(kind):
    """``make_problem`` runs whole on the meta device (no data-dependent step): the CPU draw of
    the CT noise is moved, nothing is left on the CPU."""
    params = phantom_parameters([0, 1], "validation").to("meta")
    problem = solvers.make_problem(kind, params, solvers.default_config(kind, **STEPS), EDGE)
    tensors = {**vars(problem), **problem.extra}
    moved = {name: value.device for name, value in tensors.items()
             if isinstance(value, torch.Tensor)}
    assert len(moved) >= 4 and set(moved.values()) == {torch.device("meta")}, moved


def test_the_diagnostics_run_on_the_priors_device():
    """``autoencoder_projection`` and ``funknn_of_baseline`` move their inputs to the prior."""
    prior = tiny_prior().to("meta")
    config = solvers.default_config("ct", "fbp", **STEPS)
    problem = solvers.make_problem("ct", phantom_parameters([0], "validation"), config, EDGE)
    assert solvers.autoencoder_projection(problem, prior, 8, EDGE).is_meta
    assert solvers.funknn_of_baseline(problem.truth, prior, 8).is_meta


def test_grids_and_angles_are_made_on_the_device_asked_for():
    made = [radon.limited_angles(1, device="meta"), radon.limited_angles(4, device="meta"),
            radon.full_angles(3, device="meta"), radon.detector_positions(4, device="meta"),
            phantoms.pixel_centers(3, 2, device="meta")]
    assert all(tensor.is_meta for tensor in made)
    points, length = radon.ray_points(radon.limited_angles(3), made[3], 4)  # CPU angles follow
    assert points.is_meta and length.is_meta
    assert radon.limited_angles(1).device == torch.device("cpu")  # default: the CPU


def test_numpy_results_come_back_on_the_device_of_the_input():
    like = torch.empty(2, dtype=torch.float32, device="meta")
    back = poisson.tensor_like(np.arange(2.0), like)
    assert back.device == like.device and back.dtype == torch.float32
    cpu = poisson.tensor_like(np.arange(2.0), torch.empty(1, dtype=torch.float64))
    assert cpu.device.type == "cpu" and cpu.tolist() == [0.0, 1.0]


def test_a_problem_and_a_prior_on_different_devices_are_refused():
    prior = tiny_prior()
    config = solvers.default_config("ct", "fbp", **STEPS)
    problem = solvers.make_problem("ct", phantom_parameters([0], "validation"), config, EDGE)
    assert problem.to("meta").device == torch.device("meta")
    assert problem.to("meta").extra["clean_sinogram"].is_meta
    with pytest.raises(ValueError, match="problem is on meta and the prior on cpu"):
        solvers.run_method("fbp", problem.to("meta"), prior, config)


def test_random_draws_do_not_depend_on_the_device():
    """The CT noise and the query subsets are drawn on the CPU (then moved)."""
    assert solvers.seeded_generator(5).device == torch.device("cpu")
    first = torch.randn(4, generator=solvers.seeded_generator(5))
    assert torch.equal(first, torch.randn(4, generator=solvers.seeded_generator(5)))
