"""Inverse problems with the continuous prior ``u = FunkNN(x, G(z))`` (paper section 4).

Problems (``PROBLEMS``), all on phantoms observed through their *continuous* definition
(:func:`funknn_fast.prior.phantoms.ellipse_function`), at ``n x n = size x size`` pixel centres of
``[-1, 1]^2`` (``grid_sample(align_corners=False)`` convention):

* ``"derivatives"``: the exact gradient (d/dx, d/dy, normalised coordinates) at every pixel centre;
  minimise ``sum_j |grad_x u(x_j) - g_j|^2 / sum_j |g_j|^2 + lam |z|^2``;
* ``"sparse-derivatives"``: only the ``sparse_fraction`` (20%) of the points with the largest
  gradient norm; adds ``tv_weight * TV(G(z))`` (mean anisotropic total variation of the
  low-resolution image);
* ``"ct"``: parallel-beam sinogram (:mod:`.radon`) at ``angles`` angles evenly spaced over
  [-70, +70] degrees and ``bins`` detector cells over ``[-sqrt 2, sqrt 2]``, each projection with
  Gaussian noise at ``noise_snr_db`` (30 dB) SNR; minimise ``|A u - v|^2 / |v|^2 + lam |z|^2``,
  ``A u`` the Radon transform of FunkNN rendered on the ``n x n`` grid and interpolated
  bilinearly (as the public code did with its 256^2 grid); ``ct_direct=True`` integrates
  FunkNN itself along the rays instead (exact but ``samples_per_ray`` times the queries).

Sampling of the derivative problems (issue 16, item 4): ``sampling="grid"`` observes the
``n x n`` pixel centres; ``sampling="scattered"`` observes ``samples`` points drawn uniformly in
``[-1, 1]^2`` from ``sample_seed`` (:func:`funknn_fast.prior.scattered.scattered_coords`; the
same points for every image), the prior's loss is the same at any points, the baselines are the
scattered-data least squares of :mod:`.scattered` on the ``n x n`` grid, and the result is still
scored at the ``n x n`` pixel centres. Sparse derivatives keep ``sparse_fraction`` of the
observed points in both cases.

Solver (:func:`solve`), one image at a time, as in the paper: Adam on the base latent ``z``
(``G(z) = decoder(flow.from_base(z))``, ``z = 0`` first) for ``z_steps`` steps, then Adam on a copy
of the decoder's weights for ``finetune_steps`` steps with ``z`` fixed. Warm start (not in the
paper; on by default for the derivative problems, see :data:`PROBLEM_DEFAULTS`): each of the two
stages may first fit the generator output ``G (1, C, d, d)`` to the baseline reconstruction
averaged down to the generator resolution (``adaptive_avg_pool2d``: how the training images were
rasterised), up to the unknown constant (:func:`warm_start_loss`): ``init_steps`` Adam steps on
``z`` (lr ``init_lr``) before the data term, and ``init_finetune_steps`` Adam steps on the
decoder copy (lr ``init_finetune_lr``, cosine decay) before its data term. From ``z = 0`` the
gradient losses of sharp-edged phantoms have a small basin of attraction (docs/prior.md); the
warm start costs a few decoder evaluations at ``d x d`` per step (no FunkNN).
Derivative losses use a random subset of ``queries`` observed points per step (``None``: all);
gradients of FunkNN come from ``funknn_fast.derivatives`` (forward-mode jets) or, for any other
field, from autograd.

Baselines (:func:`baseline`): FBP (Ram-Lak) for CT; least-squares Poisson integration of the
observed gradients (:mod:`.poisson`) for the derivative problems. Metrics (:mod:`.metrics`): SNR
and shift-invariant SNR against the phantom at the pixel centres.

Devices: every tensor is made on the device of its inputs. :func:`make_problem` builds the
observations on the device of ``params`` (``Problem.to`` moves them); :func:`solve` and
:func:`run_method` need the problem on the prior's device (``prior.to(device)``); the
scipy-based baselines (Poisson, TV) compute on the CPU and return tensors on the problem's
device. Random draws (CT noise, the query subsets) come from a seeded CPU generator
(:func:`seeded_generator`) and are moved afterwards, so a seed gives the same noise and the same
subsets on every device (``z`` starts at 0 anyway).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.baselines import BicubicField, total_variation, tv_ct, tv_poisson
from funknn_fast.prior.fbp import fbp
from funknn_fast.prior.generator import ContinuousPrior
from funknn_fast.prior.metrics import shift_invariant_snr, snr
from funknn_fast.prior.phantoms import ellipse_function, pixel_centers, rasterize
from funknn_fast.prior.poisson import poisson_integrate
from funknn_fast.prior.radon import detector_positions, image_function, limited_angles, radon
from funknn_fast.prior.scattered import scattered_coords, scattered_integrate, tv_scattered

PROBLEMS = ("ct", "derivatives", "sparse-derivatives")
SAMPLINGS = ("grid", "scattered")
Progress = Callable[[str, int, float], None]


@dataclass
class SolveConfig:
    size: int = 64
    z_steps: int = 300
    z_lr: float = 0.05
    finetune_steps: int = 100
    finetune_lr: float = 1e-4
    latent_weight: float = 0.0
    tv_weight: float = 1e-2
    sparse_fraction: float = 0.2
    queries: int | None = 2048
    angles: int = 60
    bins: int | None = None
    noise_snr_db: float = 30.0
    ct_direct: bool = False
    init_steps: int = 0
    init_lr: float = 0.05
    init_finetune_steps: int = 0
    init_finetune_lr: float = 1e-3
    seed: int = 0
    baseline_tv_weight: float | None = None  # None: BASELINE_DEFAULTS of the problem
    baseline_steps: int | None = None  # None: BASELINE_STEPS of the problem
    sampling: str = "grid"  # derivative problems: "grid" (pixel centres) or "scattered"
    samples: int | None = None  # scattered points (None: size^2)
    sample_seed: int | None = None  # seed of the scattered points (None: seed)

    def __post_init__(self) -> None:
        for name in ("size", "angles"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("z_steps", "finetune_steps", "init_steps", "init_finetune_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.sparse_fraction <= 1.0:
            raise ValueError(f"sparse_fraction must be in (0, 1], got {self.sparse_fraction}")
        if self.queries is not None and self.queries < 1:
            raise ValueError(f"queries must be >= 1 or None, got {self.queries}")
        if self.baseline_steps is not None and self.baseline_steps < 0:
            raise ValueError(f"baseline_steps must be >= 0, got {self.baseline_steps}")
        if self.baseline_tv_weight is not None and self.baseline_tv_weight < 0:
            raise ValueError(f"baseline_tv_weight must be >= 0, got {self.baseline_tv_weight}")
        for name in ("z_lr", "finetune_lr", "init_lr", "init_finetune_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        self._check_sampling()

    def _check_sampling(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling == "grid" and (self.samples is not None
                                        or self.sample_seed is not None):
            raise ValueError("samples and sample_seed need sampling='scattered'")
        if self.samples is not None and self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.sampling == "scattered" and self.size < 2:
            raise ValueError(f"size must be >= 2 with sampling='scattered', got {self.size}")

    @property
    def sample_count(self) -> int:
        """Observed points of the derivative problems: ``samples`` or ``size^2``."""
        return self.samples if self.samples is not None else self.size * self.size

    @property
    def points_seed(self) -> int:
        """Seed of the scattered points: ``sample_seed``, or ``seed`` when unset."""
        return self.sample_seed if self.sample_seed is not None else self.seed

    @property
    def total_steps(self) -> int:
        return self.init_steps + self.z_steps + self.init_finetune_steps + self.finetune_steps

    @property
    def detector_bins(self) -> int:
        return self.bins if self.bins is not None else math.ceil(math.sqrt(2.0) * self.size)


# Per-problem defaults of the warm start and the stages. The structure comes from short runs on
# test phantoms (issue 7, docs/prior.md): the derivative problems start from the Poisson
# reconstruction; the decoder copy is fitted to it only for dense gradients (the sparse
# baseline's artefacts would be copied); dense gradients skip the z stage's data term. The step
# counts were then re-chosen on validation phantoms 0-3 only (issue 16,
# benchmarks/prior_tune_solver.py, docs/prior_results/validation/solver_tuning.json: one setting
# changed at a time, the best mean kept): CT 300 decoder steps (was 100: +0.74 dB), dense
# gradients 3,000 decoder warm-start steps (was 1,500: +0.79 dB), sparse gradients no decoder
# fine-tuning (was 200 steps: +2.94 dB). Re-run for the wide auto-encoder shipped since
# (2026-12-03, docs/prior_results/validation/solver_tuning_wide.json): CT and dense gradients
# kept (within about 0.1 dB of their best rows), sparse gradients 200 decoder steps at lr 3e-4 (no
# decoder stage: 19.80 dB on 0-3, 18.39 on 4-7; chosen: 24.93 and 24.56, 8 of 8).
PROBLEM_DEFAULTS: dict[str, dict[str, float | int]] = {
    "ct": {"finetune_steps": 300},
    "derivatives": {"init_steps": 200, "z_steps": 0, "init_finetune_steps": 3000,
                    "finetune_steps": 50, "finetune_lr": 3e-5},
    "sparse-derivatives": {"init_steps": 200, "z_steps": 50, "finetune_steps": 200,
                           "finetune_lr": 3e-4},
}


# TV weight of the iterative baselines (``tv`` for CT, ``tv-poisson``), tuned on validation
# phantoms only (benchmarks/prior_tune.py, docs/prior_results/validation/tv_tuning.json): the
# best mean SNR (CT) or shift-invariant SNR (derivatives) over a grid, validation phantoms 0-2,
# noise seeds 0 and 1 (CT; the derivative data are noise-free).
BASELINE_DEFAULTS: dict[str, float] = {
    "ct": 1e-2,
    "derivatives": 0.3,
    "sparse-derivatives": 1.0,
}

# Primal-dual iterations of the TV baselines: converged to < 0.1 dB (twice as many change the
# validation mean by 0.08 dB for CT, 0.00 for dense; sparse needed 10,000: 3,000 left 0.4-1.7 dB).
BASELINE_STEPS: dict[str, int] = {"ct": 3000, "derivatives": 3000, "sparse-derivatives": 10000}

# Methods of ``funknn solve --method`` per problem (docs/prior.md):
# prior               the solver with PROBLEM_DEFAULTS (for CT: the paper's z = 0 protocol)
# fbp, poisson        the classical baselines
# tv, tv-poisson      the TV-regularised iterative baselines (BASELINE_DEFAULTS)
# bicubic             the prior's solver with bicubic interpolation of G(z) instead of FunkNN
# warm-start          the warm-start stages alone (no data term; CT: 200 + 1500 steps on FBP)
# funknn-of-baseline  FunkNN of the baseline area-averaged to the generator resolution (no
#                     generator at all: the warm start's target)
# zero-start          the paper's protocol: z = 0, 300 z steps (lr 0.05) + 100 decoder steps
#                     (lr 1e-4), no warm start (SolveConfig's own defaults)
_ABLATIONS = ("bicubic", "warm-start", "funknn-of-baseline", "zero-start")
METHODS: dict[str, tuple[str, ...]] = {
    "ct": ("prior", "fbp", "tv", *_ABLATIONS),
    "derivatives": ("prior", "poisson", "tv-poisson", *_ABLATIONS),
    "sparse-derivatives": ("prior", "poisson", "tv-poisson", *_ABLATIONS),
}
# Warm start used by ``--method warm-start`` when the problem's defaults have none (CT).
_WARM_START_ONLY = {"init_steps": 200, "init_finetune_steps": 1500}


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: draws are made on the CPU and then moved to the
    device that uses them, so they do not depend on that device."""
    return torch.Generator(device="cpu").manual_seed(seed)


def _check_method(kind: str, method: str) -> None:
    _check_kind(kind)
    if method not in METHODS[kind]:
        raise ValueError(f"method for {kind} must be one of {METHODS[kind]}, got {method!r}")


def default_config(kind: str, method: str = "prior", **overrides) -> SolveConfig:
    """``SolveConfig`` of ``method`` for problem ``kind``: :data:`PROBLEM_DEFAULTS` of ``kind``
    (none for ``zero-start``; ``warm-start`` without the data stages), then ``overrides``."""
    _check_method(kind, method)
    values = {} if method == "zero-start" else dict(PROBLEM_DEFAULTS[kind])
    if method == "warm-start":
        values.update(z_steps=0, finetune_steps=0)
        if not values.get("init_steps") and not values.get("init_finetune_steps"):
            values.update(_WARM_START_ONLY)
    return SolveConfig(**{**values, **overrides})


@dataclass
class Problem:
    """Observations of a batch of phantoms ``params (B, K, 6)``; ``truth (B, 1, n, n)``; all
    tensors on one device (:meth:`to`)."""

    kind: str
    params: torch.Tensor
    truth: torch.Tensor
    coords: torch.Tensor | None = None  # (B, Q, 2) observation points (derivatives), Q = n^2
    gradients: torch.Tensor | None = None  # (B, Q, 2)          on the grid, else M scattered
    mask: torch.Tensor | None = None  # (B, Q) observed points
    angles: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    sinogram: torch.Tensor | None = None  # (B, 1, A, S), noisy
    extra: dict = field(default_factory=dict)

    def select(self, index: int) -> Problem:
        """The single-image problem ``index``."""

        def pick(value):
            return value[index : index + 1] if isinstance(value, torch.Tensor) else value

        return Problem(
            self.kind, pick(self.params), pick(self.truth), pick(self.coords),
            pick(self.gradients), pick(self.mask), self.angles, self.positions,
            pick(self.sinogram), dict(self.extra),
        )

    @property
    def device(self) -> torch.device:
        return self.truth.device

    @property
    def scattered(self) -> bool:
        """Whether the derivatives are observed at scattered points (not the pixel centres)."""
        return self.extra.get("sampling") == "scattered"

    def to(self, device: torch.device | str) -> Problem:
        """The same problem with every tensor (``extra`` included) on ``device``."""

        def move(value):
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return Problem(
            self.kind, move(self.params), move(self.truth), move(self.coords),
            move(self.gradients), move(self.mask), move(self.angles), move(self.positions),
            move(self.sinogram), {key: move(value) for key, value in self.extra.items()},
        )


def _check_kind(kind: str) -> None:
    if kind not in PROBLEMS:
        raise ValueError(f"problem must be one of {PROBLEMS}, got {kind!r}")


def phantom_gradients(
    params: torch.Tensor, coords: torch.Tensor, edge_width: float
) -> torch.Tensor:
    """Exact gradient ``(B, Q, 2)`` of the phantoms at ``coords (B, Q, 2)`` (float64 autograd)."""
    with torch.enable_grad():
        points = coords.detach().double().requires_grad_(True)
        values = ellipse_function(params, points, edge_width)
        (gradient,) = torch.autograd.grad(values.sum(), points)
    return gradient.to(coords.dtype)


def make_problem(
    kind: str, params: torch.Tensor, config: SolveConfig, edge_width: float
) -> Problem:
    """Observations of ``kind`` for phantoms ``params (B, K, 6)``, on the device of ``params``
    (noise drawn on the CPU from ``config.seed``, :func:`seeded_generator`)."""
    _check_kind(kind)
    batch, n, device = params.shape[0], config.size, params.device
    truth = rasterize(params, n, edge_width, supersample=1)
    problem = Problem(kind, params, truth)
    if kind in ("derivatives", "sparse-derivatives"):
        coords = observation_coords(config, batch, device)
        observe_derivatives(problem, coords, config.sparse_fraction, edge_width)
        problem.extra["sampling"] = config.sampling
        return problem
    if config.sampling != "grid":
        raise ValueError(f"sampling={config.sampling!r} needs a derivative problem, not {kind}")
    angles = limited_angles(config.angles, device=device)
    positions = detector_positions(config.detector_bins, math.sqrt(2.0), torch.float64, device)
    clean = radon(
        lambda c: ellipse_function(params, c, edge_width), angles, positions, batch,
        samples_per_ray=2 * n,
    )
    generator = seeded_generator(config.seed)
    power = clean.pow(2).mean(dim=-1, keepdim=True)
    sigma = torch.sqrt(power) * 10.0 ** (-config.noise_snr_db / 20.0)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype,
                        device=generator.device).to(device) * sigma
    problem.angles, problem.positions = angles.float(), positions.float()
    problem.sinogram = (clean + noise).float()
    problem.extra["clean_sinogram"] = clean.float()
    return problem


def observation_coords(
    config: SolveConfig, batch: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Observation points ``(batch, Q, 2)`` of the derivative problems: the ``size x size``
    pixel centres (``sampling="grid"``, ``Q = size^2``, row-major) or ``sample_count`` points
    uniform in ``[-1, 1]^2`` from ``points_seed`` (``"scattered"``), float32 on ``device``."""
    if config.sampling == "grid":
        return pixel_centers(config.size, batch, device=device)
    return scattered_coords(config.sample_count, config.points_seed, batch, device=device)


def observe_derivatives(
    problem: Problem, coords: torch.Tensor, sparse_fraction: float, edge_width: float
) -> None:
    """Set ``problem.coords`` (``coords (B, Q, 2)``), the phantoms' exact ``gradients
    (B, Q, 2)`` there and the ``mask (B, Q)`` of the observed points: all of them, or for
    sparse derivatives the ``sparse_fraction`` of largest gradient norm."""
    gradients = phantom_gradients(problem.params, coords, edge_width)
    batch, count = coords.shape[:2]
    mask = torch.ones(batch, count, dtype=torch.bool, device=coords.device)
    if problem.kind == "sparse-derivatives":
        keep = max(1, round(sparse_fraction * count))
        largest = gradients.norm(dim=-1).topk(keep, dim=1).indices
        mask = torch.zeros_like(mask).scatter_(1, largest, True)
    problem.coords, problem.gradients, problem.mask = coords, gradients, mask


def baseline(problem: Problem) -> torch.Tensor:
    """FBP (CT), Poisson integration (derivatives on the grid) or its scattered-data least
    squares (:func:`.scattered.scattered_integrate`): ``(B, 1, n, n)``."""
    n = problem.truth.shape[-1]
    if problem.kind == "ct":
        return fbp(problem.sinogram, problem.angles, problem.positions, n)
    if problem.scattered:
        return scattered_integrate(problem.coords, problem.gradients, problem.mask, n).float()
    batch = problem.truth.shape[0]
    gradients = problem.gradients.reshape(batch, n, n, 2).permute(0, 3, 1, 2)
    return poisson_integrate(gradients, problem.mask.reshape(batch, n, n)).float()


def spatial_gradient(
    field_fn: nn.Module, coords: torch.Tensor, images: torch.Tensor
) -> torch.Tensor:
    """``(d/dx, d/dy)`` of ``field_fn(coords, images)`` (first channel): ``(B, Q, 2)``.

    Exact forward-mode jets for ``FunkNN``; autograd (``create_graph``) for other fields.
    """
    if isinstance(field_fn, FunkNN):
        from funknn_fast.derivatives import funknn_derivatives

        return funknn_derivatives(field_fn, coords, images, order="gradient").gradient[..., 0, :]
    points = coords.detach().requires_grad_(True)
    values = field_fn(points, images)[..., 0]
    (gradient,) = torch.autograd.grad(values.sum(), points, create_graph=True)
    return gradient


def data_loss(
    problem: Problem,
    prior: ContinuousPrior,
    images: torch.Tensor,
    config: SolveConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Normalised data misfit (+ TV for sparse derivatives) of low-res ``images (1, C, d, d)``;
    the query subset is drawn from ``generator`` on its device, then moved to the problem's."""
    if problem.kind == "ct":
        if config.ct_direct:
            function = lambda c: prior.field(c, images)  # noqa: E731
        else:
            function = image_function(prior.render(images, config.size))
        sinogram = radon(
            function, problem.angles, problem.positions, images.shape[0],
            samples_per_ray=config.size,
        )
        return (sinogram - problem.sinogram).pow(2).sum() / problem.sinogram.pow(2).sum()
    observed = problem.mask[0].nonzero().squeeze(1)
    if config.queries is not None and config.queries < observed.numel():
        pick = torch.randperm(observed.numel(), generator=generator, device=generator.device)
        observed = observed[pick[: config.queries].to(observed.device)]
    coords = problem.coords[:, observed]
    target = problem.gradients[:, observed]
    estimate = spatial_gradient(prior.funknn, coords, images)
    scale = problem.gradients[problem.mask].pow(2).sum(-1).mean()
    loss = (estimate - target).pow(2).sum(-1).mean() / scale
    if problem.kind == "sparse-derivatives":
        loss = loss + config.tv_weight * total_variation(images)
    return loss


def warm_start_target(problem: Problem, resolution: int) -> torch.Tensor:
    """The baseline reconstruction area-averaged to ``resolution``, zero mean: ``(1, 1, d, d)``."""
    start = baseline(problem)
    target = F.adaptive_avg_pool2d(start, resolution)
    return target - target.mean()


def warm_start_loss(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |(G - mean G) - target|^2 / mean |target|^2``: the fit up to the unknown constant.

    ``images`` and ``target (1, C, d, d)``, ``target`` of zero mean (:func:`warm_start_target`).
    """
    return (images - images.mean() - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)


def _adam(
    parameters: list[torch.Tensor],
    lr: float,
    steps: int,
    loss_fn: Callable[[], torch.Tensor],
    phase: str,
    losses: dict[str, list[float]],
    progress: Progress | None,
    cosine: bool = False,
) -> None:
    """``steps`` Adam steps on ``loss_fn()``; cosine decay of the lr to 0 when ``cosine``."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    for step in range(steps):
        if cosine:
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / steps))
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[phase].append(loss.item())
        if progress:
            progress(phase, step, losses[phase][-1])


def solve(
    problem: Problem,
    prior: ContinuousPrior,
    config: SolveConfig,
    progress: Progress | None = None,
) -> dict:
    """Solve a single-image ``problem``; returns ``estimate (1, 1, n, n)``, ``low_res``,
    ``losses`` (per phase: ``init``, ``z``, ``init_finetune``, ``finetune``) and ``z``.

    Phases, in order: ``init`` (warm start of ``z`` on the baseline), ``z`` (Adam on ``z``, the
    data term), ``init_finetune`` (warm start of the decoder copy on the baseline),
    ``finetune`` (Adam on the decoder copy, the data term). Everything runs on the prior's
    device, which must be the problem's; the query subsets come from a CPU generator.
    """
    if problem.truth.shape[0] != 1:
        raise ValueError("solve takes a single-image problem: use problem.select(i)")
    _check_kind(problem.kind)
    _check_device(problem, prior)
    for module in (prior.funknn, prior.flow, prior.autoencoder):
        module.requires_grad_(False)
    generator = seeded_generator(config.seed)
    z = torch.zeros(1, prior.latent, device=prior.device, requires_grad=True)
    losses: dict[str, list[float]] = {"init": [], "z": [], "init_finetune": [], "finetune": []}
    target = None
    if config.init_steps or config.init_finetune_steps:
        target = warm_start_target(problem, prior.autoencoder.size).to(z.dtype)
    _adam([z], config.init_lr, config.init_steps,
          lambda: warm_start_loss(prior.generate(z), target), "init", losses, progress)

    def z_loss() -> torch.Tensor:
        loss = data_loss(problem, prior, prior.generate(z), config, generator)
        return loss + config.latent_weight * z.pow(2).sum()

    _adam([z], config.z_lr, config.z_steps, z_loss, "z", losses, progress)
    decoder = copy.deepcopy(prior.autoencoder.decoder).requires_grad_(True)
    latent = prior.flow.from_base(z.detach())
    weights = list(decoder.parameters())
    _adam(weights, config.init_finetune_lr, config.init_finetune_steps,
          lambda: warm_start_loss(decoder(latent), target), "init_finetune", losses, progress,
          cosine=True)
    _adam(weights, config.finetune_lr, config.finetune_steps,
          lambda: data_loss(problem, prior, decoder(latent), config, generator), "finetune",
          losses, progress)
    with torch.no_grad():
        images = decoder(latent)
        estimate = prior.render(images, config.size)
    return {"estimate": estimate, "low_res": images, "losses": losses, "z": z.detach()}


def _check_device(problem: Problem, prior: ContinuousPrior) -> None:
    if problem.device != prior.device:
        raise ValueError(f"the problem is on {problem.device} and the prior on {prior.device}: "
                         "move one (problem.to(device) or prior.to(device))")


def with_field(prior: ContinuousPrior, field_fn: nn.Module) -> ContinuousPrior:
    """The same generator with ``field_fn`` in place of FunkNN (e.g. :class:`BicubicField`)."""
    swapped = ContinuousPrior(prior.autoencoder, prior.flow, field_fn).eval()
    swapped.info = getattr(prior, "info", {})
    return swapped


def baseline_tv_weight(kind: str, config: SolveConfig) -> float:
    """``config.baseline_tv_weight``, or the validation-tuned :data:`BASELINE_DEFAULTS`."""
    _check_kind(kind)
    weight = config.baseline_tv_weight
    return BASELINE_DEFAULTS[kind] if weight is None else weight


def baseline_steps(kind: str, config: SolveConfig) -> int:
    """``config.baseline_steps``, or :data:`BASELINE_STEPS` of the problem."""
    _check_kind(kind)
    steps = config.baseline_steps
    return BASELINE_STEPS[kind] if steps is None else steps


def run_method(
    method: str,
    problem: Problem,
    prior: ContinuousPrior,
    config: SolveConfig,
    progress: Progress | None = None,
) -> dict:
    """Solve a single-image ``problem`` with ``method`` (:data:`METHODS`): ``estimate
    (1, 1, n, n)`` on the problem's device (the prior's) and ``losses`` (per phase; empty for
    the direct methods)."""
    _check_method(problem.kind, method)
    if problem.truth.shape[0] != 1:
        raise ValueError("run_method takes a single-image problem: use problem.select(i)")
    _check_device(problem, prior)
    n = problem.truth.shape[-1]
    if method in ("prior", "zero-start", "warm-start"):
        return solve(problem, prior, config, progress)
    if method == "bicubic":
        return solve(problem, method_prior(method, prior), config, progress)
    if method in ("fbp", "poisson"):
        return {"estimate": baseline(problem), "losses": {}}
    if method == "funknn-of-baseline":
        return {"estimate": funknn_of_baseline(baseline(problem), prior, n), "losses": {}}
    weight = baseline_tv_weight(problem.kind, config)
    if method == "tv":
        estimate, losses = tv_ct(problem.sinogram, problem.angles, problem.positions, n,
                                 weight, baseline_steps(problem.kind, config))
    elif problem.scattered:
        estimate, losses = tv_scattered(problem.coords, problem.gradients, problem.mask, n,
                                        weight, baseline_steps(problem.kind, config))
    else:
        gradients = problem.gradients.reshape(1, n, n, 2).permute(0, 3, 1, 2)
        estimate, losses = tv_poisson(gradients, problem.mask.reshape(1, n, n), weight,
                                      baseline_steps(problem.kind, config))
    return {"estimate": estimate.float(), "losses": {"baseline": losses}}


def method_prior(method: str, prior: ContinuousPrior) -> ContinuousPrior:
    """The continuous model ``method`` solves with: ``prior``, or for ``bicubic`` the same
    generator with :class:`BicubicField` in place of FunkNN."""
    if method == "bicubic":
        return with_field(prior, BicubicField(prior.funknn.channels))
    return prior


@torch.no_grad()
def render_solution(
    method: str, result: dict, prior: ContinuousPrior, size: int
) -> torch.Tensor | None:
    """The continuous solution of a generator-based ``method`` (a :func:`run_method`
    ``result`` with ``low_res (1, C, d, d)``) rendered at the ``size x size`` pixel centres:
    ``(1, C, size, size)``; ``None`` for the grid-bound methods (no ``low_res``, or ``None``)."""
    if result.get("low_res") is None:
        return None
    return method_prior(method, prior).render(result["low_res"], size)


def method_steps(method: str, config: SolveConfig) -> int:
    """Progress steps of ``method`` (for progress bars)."""
    if method in ("fbp", "poisson", "funknn-of-baseline", "tv", "tv-poisson"):
        return 0
    return config.total_steps


@torch.no_grad()
def autoencoder_projection(
    problem: Problem, prior: ContinuousPrior, size: int, edge_width: float
) -> torch.Tensor:
    """FunkNN(decoder(encoder(phantom))): the best the prior does knowing the truth (diagnostic);
    ``(B, 1, size, size)`` on the prior's device."""
    params = problem.params.to(prior.device)
    low = rasterize(params, prior.autoencoder.size, edge_width, supersample=2)
    return prior.render(prior.autoencoder(low), size)


@torch.no_grad()
def funknn_of_baseline(
    reconstruction: torch.Tensor, prior: ContinuousPrior, size: int
) -> torch.Tensor:
    """FunkNN of the baseline ``reconstruction (B, 1, n, n)`` area-averaged to the generator
    resolution (what the warm start aims at), rendered at ``size``: ``(B, 1, size, size)`` on
    the prior's device."""
    low = F.adaptive_avg_pool2d(reconstruction.to(prior.device), prior.autoencoder.size)
    return prior.render(low, size)


def body_mask(params: torch.Tensor, size: int, shrink: float = 0.85) -> torch.Tensor:
    """Pixels ``(B, size * size)`` inside the body ellipse ``params[:, 0]`` with its semi-axes
    scaled by ``shrink`` (away from the outer edge): where the inner ellipses are; on the
    device of ``params``."""
    coords = pixel_centers(size, params.shape[0], torch.float64, params.device)
    _, cx, cy, a, b, phi = (params[:, 0, i].double().unsqueeze(1) for i in range(6))
    dx, dy = coords[..., 0] - cx, coords[..., 1] - cy
    u = (dx * torch.cos(phi) + dy * torch.sin(phi)) / (shrink * a)
    v = (-dx * torch.sin(phi) + dy * torch.cos(phi)) / (shrink * b)
    return u * u + v * v < 1.0


def detail_snr(estimate: torch.Tensor, truth: torch.Tensor, params: torch.Tensor) -> list[float]:
    """Per image: SNR (dB) of the inner detail, on the pixels of :func:`body_mask` only, both
    images with their mean there removed and the estimate's scale fitted:
    ``10 log10(|x_c|^2 / |x_c - a y_c|^2)``, ``a = <x_c, y_c> / |y_c|^2``; ``estimate`` and
    ``truth (B, 1, n, n)``. 0 dB: no detail recovered; the body's plateau does not count."""
    mask = body_mask(params.to(truth.device), truth.shape[-1])
    scores = []
    for k in range(truth.shape[0]):
        inside = mask[k]
        x = truth[k].reshape(-1)[inside].double()
        y = estimate[k].reshape(-1)[inside].double()
        x, y = x - x.mean(), y - y.mean()
        scale = (x @ y) / (y @ y).clamp_min(1e-300)
        scores.append(10.0 * math.log10((x @ x).item() / (x - scale * y).pow(2).sum().item()))
    return scores


def metrics(
    estimate: torch.Tensor, truth: torch.Tensor, params: torch.Tensor | None = None
) -> dict[str, list[float]]:
    """Per-image ``snr`` and ``si_snr`` (dB) of ``estimate`` against ``truth`` (both
    ``(B, 1, n, n)``; the argument order of :mod:`.metrics`), and ``detail_snr``
    (:func:`detail_snr`) when the phantoms' ``params (B, K, 6)`` are given."""
    scores = {
        "snr": snr(estimate, truth).tolist(),
        "si_snr": shift_invariant_snr(estimate, truth).tolist(),
    }
    if params is not None:
        scores["detail_snr"] = detail_snr(estimate, truth, params)
    return scores
