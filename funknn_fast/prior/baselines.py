"""Non-generative baselines and the bicubic ablation field for the inverse problems (issue 16).

Conventions of :mod:`funknn_fast.prior.solvers`: images ``(B, 1, n, n)`` on the ``n x n`` pixel
centres of ``[-1, 1]^2`` (``grid_sample(align_corners=False)``: ``x`` columns, ``y`` rows),
sinograms ``(B, 1, A, S)`` (angle-major rays of :func:`funknn_fast.prior.radon.ray_points`).

* :func:`radon_matrix`: the sparse matrix ``(A * S, n * n)`` of ``radon(image_function(u))``
  (bilinear interpolation of the grid, midpoint rule along each clipped ray), exactly the CT
  forward model of the prior's solver, as one matrix;
* :func:`tv_ct`: non-negative least squares + anisotropic TV,
  ``min_{u >= 0} |A u - v|^2 / |v|^2 + weight * TV(u)``, from ``u = 0``;
* :func:`tv_poisson`: Poisson integration + TV,
  ``min_u sum_e w_e (D u - t)_e^2 / sum_e w_e t_e^2 + weight * TV(u)`` on the edge system of
  :func:`funknn_fast.prior.poisson.poisson_system`, from the Poisson solution (its
  ``weight = 0`` minimiser); the result has zero mean;
* :func:`pdhg_tv`: the solver of both, the diagonally preconditioned primal-dual algorithm
  (Pock & Chambolle 2011) on scipy sparse matrices, a fixed number of iterations;
* :class:`BicubicField`: ``(coords (B, Q, 2), images (B, C, d, d)) -> (B, Q, C)``, bicubic
  interpolation (Keys, ``a = -0.75``, zero padding: ``F.grid_sample(mode="bicubic")``) written
  with gathers so that its coordinate derivatives are differentiable again (the derivative
  problems need ``d/dz`` of ``d/dx``); the ablation "bicubic instead of FunkNN".

``TV(u)`` is :func:`total_variation`: ``mean |dx| + mean |dy|`` over the image's pixel pairs.
The weights are :data:`funknn_fast.prior.solvers.BASELINE_DEFAULTS` (tuned on validation
phantoms, ``benchmarks/prior_tune.py``). The primal-dual iterations run in numpy / scipy on the
CPU; :func:`tv_ct` and :func:`tv_poisson` take tensors on any device and return their result on
the device of their input.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from funknn_fast.prior.poisson import numpy_of, poisson_integrate, poisson_system, tensor_like
from funknn_fast.prior.radon import ray_points


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean anisotropic TV ``mean |dx| + mean |dy|`` of ``images (B, C, h, w)``."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx.abs().mean() + dy.abs().mean()


def radon_matrix(
    angles: torch.Tensor,
    positions: torch.Tensor,
    size: int,
    samples_per_ray: int,
    support: float = 1.0,
) -> torch.Tensor:
    """Sparse COO matrix ``(A * S, size * size)`` float64 with ``M @ u.flatten()`` equal to
    ``radon(image_function(u), angles, positions, samples_per_ray=samples_per_ray)`` of a
    ``size x size`` image ``u`` (row-major; bilinear interpolation, zero outside the grid), on
    the device of ``positions``."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    points, length = ray_points(angles.double(), positions.double(), samples_per_ray, support)
    rays = points.shape[0]
    ix = ((points[..., 0] + 1.0) * size - 1.0) / 2.0  # (R, M) column coordinate
    iy = ((points[..., 1] + 1.0) * size - 1.0) / 2.0
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    scale = (length / samples_per_ray).unsqueeze(1)
    ray = torch.arange(rays, device=points.device).unsqueeze(1).expand_as(ix)
    rows, cols, values = [], [], []
    for dx, wx in ((0, 1.0 - fx), (1, fx)):
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            col, row = x0.long() + dx, y0.long() + dy
            keep = (col >= 0) & (col < size) & (row >= 0) & (row < size) & (scale > 0)
            rows.append(ray[keep])
            cols.append((row * size + col)[keep])
            values.append((wx * wy * scale)[keep])
    indices = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(indices, torch.cat(values), (rays, size * size),
                                   check_invariants=False).coalesce()


def difference_matrix(size: int) -> sp.csr_matrix:
    """Forward differences of a row-major ``size x size`` image: ``(2 size (size - 1), size^2)``,
    horizontal (``u[r, c + 1] - u[r, c]``) then vertical, so that
    ``|D u|_1 / (size (size - 1))`` is :func:`total_variation` of the image."""
    eye = sp.identity(size, format="csr")
    step = sp.diags([-np.ones(size - 1), np.ones(size - 1)], [0, 1], shape=(size - 1, size))
    return sp.vstack([sp.kron(eye, step), sp.kron(step, eye)]).tocsr()


def pdhg_tv(
    matrix: sp.csr_matrix,
    data: np.ndarray,
    weights: np.ndarray,
    size: int,
    tv: float,
    iterations: int,
    start: np.ndarray,
    nonnegative: bool,
) -> tuple[np.ndarray, list[float]]:
    """Minimise ``sum_i w_i (M u - d)_i^2 / sum_i w_i d_i^2 + tv * TV(u)`` (``u >= 0`` when
    ``nonnegative``) over row-major ``size x size`` images ``u`` by the diagonally
    preconditioned primal-dual algorithm of Pock & Chambolle (ICCV 2011, alpha = 1) from
    ``start``; returns ``u (size^2,)`` and the objective every iteration."""
    if tv < 0 or iterations < 0:
        raise ValueError(f"need tv >= 0 and iterations >= 0, got {tv}, {iterations}")
    root = np.sqrt(weights)
    scaled_matrix, scaled_data = sp.diags(root) @ matrix, root * data
    norm = max(float(scaled_data @ scaled_data), 1e-300)
    differences = difference_matrix(size)
    pairs = size * (size - 1)
    # objective * norm / 2 = 1/2 |A u - b|^2 + mu |D u|_1
    mu = tv * norm / (2.0 * pairs)
    operator = sp.vstack([scaled_matrix, differences]).tocsr()
    absolute = abs(operator)
    tau = 1.0 / np.maximum(np.asarray(absolute.sum(axis=0)).ravel(), 1e-12)
    sigma = 1.0 / np.maximum(np.asarray(absolute.sum(axis=1)).ravel(), 1e-12)
    rows = scaled_matrix.shape[0]
    transposed = operator.T.tocsr()
    u = start.astype(np.float64).copy()
    if nonnegative:
        u = np.maximum(u, 0.0)
    extrapolated, dual = u.copy(), np.zeros(operator.shape[0])
    objective = []
    for _ in range(iterations):
        dual += sigma * (operator @ extrapolated)
        dual[:rows] = (dual[:rows] - sigma[:rows] * scaled_data) / (1.0 + sigma[:rows])
        dual[rows:] = np.clip(dual[rows:], -mu, mu)
        update = u - tau * (transposed @ dual)
        if nonnegative:
            update = np.maximum(update, 0.0)
        extrapolated, u = 2.0 * update - u, update
        residual = scaled_matrix @ u - scaled_data
        objective.append(float(residual @ residual) / norm
                         + tv * float(np.abs(differences @ u).sum()) / pairs)
    return u, objective


def _scipy(matrix: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse COO matrix (any device) as scipy CSR."""
    indices = matrix.indices().cpu().numpy()
    return sp.csr_matrix((numpy_of(matrix.values()), (indices[0], indices[1])),
                         shape=tuple(matrix.shape))


def tv_ct(
    sinogram: torch.Tensor,
    angles: torch.Tensor,
    positions: torch.Tensor,
    size: int,
    weight: float,
    iterations: int = 3000,
    samples_per_ray: int | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Non-negative least squares + TV of ``sinogram (1, 1, A, S)``:
    ``min_{u >= 0} |A u - v|^2 / |v|^2 + weight * TV(u)`` from ``u = 0`` (:func:`pdhg_tv`),
    ``A`` = :func:`radon_matrix` with ``samples_per_ray`` (default ``size``: the prior's CT
    forward model). Returns the image ``(1, 1, size, size)`` (device and dtype of ``sinogram``;
    solved on the CPU) and the objective per iteration."""
    if sinogram.dim() != 4 or sinogram.shape[:2] != (1, 1):
        raise ValueError(f"sinogram must have shape (1, 1, A, S), got {tuple(sinogram.shape)}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    matrix = _scipy(radon_matrix(angles, positions, size, samples_per_ray or size))
    data = numpy_of(sinogram).reshape(-1)
    image, objective = pdhg_tv(matrix, data, np.ones_like(data), size, weight, iterations,
                               np.zeros(size * size), nonnegative=True)
    return tensor_like(image, sinogram).reshape(1, 1, size, size), objective


def tv_poisson(
    gradients: torch.Tensor,
    mask: torch.Tensor,
    weight: float,
    iterations: int = 3000,
    missing_weight: float = 1e-2,
) -> tuple[torch.Tensor, list[float]]:
    """TV-regularised Poisson integration of ``gradients (1, 2, n, n)`` (``d/dx``, ``d/dy``)
    observed where ``mask (1, n, n)``: ``min_u sum_e w_e (D u - t)_e^2 / sum_e w_e t_e^2 +
    weight * TV(u)`` on the edge system of :func:`funknn_fast.prior.poisson.poisson_system`, from
    the Poisson solution (:func:`pdhg_tv`). Returns the zero-mean image ``(1, 1, n, n)`` (device
    and dtype of ``gradients``; solved on the CPU) and the objective per iteration."""
    if gradients.dim() != 4 or gradients.shape[:2] != (1, 2):
        raise ValueError(f"gradients must have shape (1, 2, n, n), got {tuple(gradients.shape)}")
    if gradients.shape[-1] != gradients.shape[-2]:
        raise ValueError(f"gradients must be square, got {tuple(gradients.shape)}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    n = gradients.shape[-1]
    matrix, target, weights = poisson_system(
        numpy_of(gradients[0]), mask[0].cpu().numpy().astype(bool), missing_weight)
    start = numpy_of(poisson_integrate(gradients.double(), mask, missing_weight)).reshape(-1)
    image, objective = pdhg_tv(matrix, target, weights, n, weight, iterations, start,
                               nonnegative=False)
    image = image - image.mean()
    return tensor_like(image, gradients).reshape(1, 1, n, n), objective


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys cubic-convolution weights of the 4 taps at offsets -1, 0, 1, 2: ``(..., 4)``."""

    def near(x):  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

    return torch.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)], dim=-1)


class BicubicField(nn.Module):
    """Bicubic interpolation of ``images (B, C, d, d)`` at ``coords (B, Q, 2)``: ``(B, Q, C)``.

    Equal to ``F.grid_sample(images, coords, mode="bicubic", padding_mode="zeros",
    align_corners=False)``; differentiable to any order in ``coords`` (piecewise polynomial).
    """

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, coords: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if coords.dim() != 3 or coords.shape[-1] != 2 or images.dim() != 4:
            raise ValueError(f"need coords (B, Q, 2) and images (B, C, H, W), got "
                             f"{tuple(coords.shape)}, {tuple(images.shape)}")
        batch, channels, height, width = images.shape
        ix = ((coords[..., 0] + 1.0) * width - 1.0) / 2.0
        iy = ((coords[..., 1] + 1.0) * height - 1.0) / 2.0
        x0, y0 = ix.detach().floor(), iy.detach().floor()
        taps = torch.arange(-1, 3, device=coords.device)
        cols = x0.long().unsqueeze(-1) + taps  # (B, Q, 4)
        rows = y0.long().unsqueeze(-1) + taps
        wx = _cubic_weights(ix - x0) * ((cols >= 0) & (cols < width)).to(coords.dtype)
        wy = _cubic_weights(iy - y0) * ((rows >= 0) & (rows < height)).to(coords.dtype)
        index = rows.clamp(0, height - 1).unsqueeze(-1) * width + cols.clamp(0, width - 1
                                                                               ).unsqueeze(-2)
        flat = images.reshape(batch, channels, height * width)
        gathered = flat.gather(2, index.reshape(batch, 1, -1).expand(-1, channels, -1))
        gathered = gathered.reshape(batch, channels, *index.shape[1:])  # (B, C, Q, 4, 4)
        weights = (wy.unsqueeze(-1) * wx.unsqueeze(-2)).unsqueeze(1).to(images.dtype)
        return (gathered * weights).sum((-2, -1)).transpose(1, 2)
