"""Derivative observations at scattered, off-grid points and their grid baselines (issue 16).

Conventions of :mod:`funknn_fast.prior.solvers`: coordinates ``(x, y)`` in ``[-1, 1]^2``, ``x``
the column direction, ``y`` the row direction; an ``n x n`` image ``u`` holds values at the
pixel centres ``(2k + 1) / n - 1`` (``grid_sample(align_corners=False)``), row-major when
flattened; gradients are ``(d/dx, d/dy)`` in these normalised coordinates.

* :func:`scattered_coords`: ``M`` points drawn uniformly in ``[-1, 1]^2`` from a seed (on the
  CPU, then moved), the same for every image of a batch;
* :func:`bilinear_gradient_matrix`: the sparse matrix ``(2 M, n^2)`` of
  ``h * grad(bilinear(u))`` at the points (``h = 2 / n``; the ``d/dx`` rows first): 4 taps per
  point and component. Points in the half-pixel band outside the hull of the pixel centres
  take the gradient of the nearest cell at the nearest point of the hull (the cell index and the
  fractional position are clamped);
* :func:`scattered_system` / :func:`scattered_integrate`: the scattered-data Poisson baseline,
  ``min_u sum_j |h grad(bilinear u)(x_j) - h g_j|^2 + smooth_weight |D u|^2`` over the observed
  points (``D`` forward differences between neighbouring pixels, target 0, as the grid
  Poisson's unobserved edges in :mod:`.poisson`; weight :data:`SMOOTH_WEIGHT`), zero-mean
  result;
* :func:`tv_scattered`: the same system + ``weight * TV(u)`` (:func:`.baselines.pdhg_tv`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from funknn_fast.prior.baselines import difference_matrix, pdhg_tv
from funknn_fast.prior.poisson import least_squares, numpy_of, tensor_like

# Weight of the smoothing rows (relative to a sample's rows), chosen on validation phantoms 0-3
# (M = 4096 points, n = 64, `python benchmarks/prior_grid.py tune`, results in
# docs/prior_results/grid/scattered_tuning.json): mean SI-SNR 19.40 dB dense
# (0.1: 19.26, 1: 18.49) and 17.80 dB sparse (1: 17.96, 0.1: 16.31). With about one point per
# pixel, about a third of the cells (e^-1) hold none: the rows fill them.
SMOOTH_WEIGHT = 0.3


def scattered_coords(
    samples: int,
    seed: int,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``samples`` points uniform in ``[-1, 1]^2``: ``(batch, samples, 2)``, the same points for
    every image, drawn on the CPU from ``seed`` (so equal on every device), then moved."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    points = torch.rand(samples, 2, generator=generator, dtype=torch.float64) * 2.0 - 1.0
    return points.to(dtype).unsqueeze(0).expand(batch, -1, -1).to(device).contiguous()


def _cells(position: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell index ``k`` in ``[0, size - 2]`` and fraction ``t`` in ``[0, 1]`` of coordinates
    ``position`` along one axis (pixel centre ``k`` at ``(2k + 1) / size - 1``)."""
    continuous = ((position + 1.0) * size - 1.0) / 2.0
    cell = np.clip(np.floor(continuous), 0, size - 2).astype(np.int64)
    return cell, np.clip(continuous - cell, 0.0, 1.0)


def bilinear_gradient_matrix(coords: np.ndarray, size: int) -> sp.csr_matrix:
    """``(2 M, size^2)``: rows ``h d/dx`` then ``h d/dy`` (``h = 2 / size``) of the bilinear
    interpolant of a row-major ``size x size`` image at ``coords (M, 2)`` (``x``, ``y``).

    ``h d/dx`` at a point of cell ``(r, c)`` with fractions ``(tx, ty)`` is
    ``(1 - ty) (u[r, c+1] - u[r, c]) + ty (u[r+1, c+1] - u[r+1, c])``; ``d/dy`` alike.
    """
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (M, 2), got {coords.shape}")
    count = coords.shape[0]
    col, tx = _cells(coords[:, 0], size)
    row, ty = _cells(coords[:, 1], size)

    def node(r, c):
        return r * size + c

    x_taps = [(node(row, col), -(1 - ty)), (node(row, col + 1), 1 - ty),
              (node(row + 1, col), -ty), (node(row + 1, col + 1), ty)]
    y_taps = [(node(row, col), -(1 - tx)), (node(row + 1, col), 1 - tx),
              (node(row, col + 1), -tx), (node(row + 1, col + 1), tx)]
    rows, cols, values = [], [], []
    for offset, taps in ((0, x_taps), (count, y_taps)):
        for columns, weights in taps:
            rows.append(np.arange(count) + offset)
            cols.append(columns)
            values.append(weights)
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(2 * count, size * size))


def scattered_system(
    coords: np.ndarray, gradients: np.ndarray, size: int, smooth_weight: float = SMOOTH_WEIGHT
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The least-squares system of one image: ``matrix (2 M + 2 n (n - 1), n^2)``, ``target``
    and ``weight``: the observed points' rows (:func:`bilinear_gradient_matrix`, target
    ``h g``, weight 1) then the forward differences (target 0, weight ``smooth_weight``).
    ``coords`` and ``gradients (M, 2)`` of the observed points only."""
    if smooth_weight < 0:
        raise ValueError(f"smooth_weight must be >= 0, got {smooth_weight}")
    gradients = np.asarray(gradients, dtype=np.float64)
    if gradients.shape != np.shape(coords):
        raise ValueError(f"gradients {gradients.shape} and coords {np.shape(coords)} differ")
    spacing = 2.0 / size
    samples = bilinear_gradient_matrix(coords, size)
    differences = difference_matrix(size)
    target = np.concatenate([spacing * gradients[:, 0], spacing * gradients[:, 1],
                             np.zeros(differences.shape[0])])
    weight = np.concatenate([np.ones(samples.shape[0]),
                             np.full(differences.shape[0], smooth_weight)])
    return sp.vstack([samples, differences]).tocsr(), target, weight


def _observed(coords: torch.Tensor, gradients: torch.Tensor, mask: torch.Tensor | None,
              item: int) -> tuple[np.ndarray, np.ndarray]:
    """The observed points of image ``item``: ``coords`` and ``gradients (M_obs, 2)`` (numpy)."""
    keep = slice(None) if mask is None else mask[item].detach().cpu().numpy().astype(bool)
    return numpy_of(coords[item])[keep], numpy_of(gradients[item])[keep]


def _check_observations(coords: torch.Tensor, gradients: torch.Tensor,
                        mask: torch.Tensor | None) -> None:
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B, M, 2), got {tuple(coords.shape)}")
    if gradients.shape != coords.shape:
        raise ValueError(f"gradients {tuple(gradients.shape)} and coords "
                         f"{tuple(coords.shape)} differ")
    if mask is not None and mask.shape != coords.shape[:2]:
        raise ValueError(f"mask must have shape {tuple(coords.shape[:2])}, got "
                         f"{tuple(mask.shape)}")


def scattered_integrate(
    coords: torch.Tensor,
    gradients: torch.Tensor,
    mask: torch.Tensor | None,
    size: int,
    smooth_weight: float = SMOOTH_WEIGHT,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Integrate gradients ``(B, M, 2)`` observed at ``coords (B, M, 2)`` (where ``mask (B, M)``,
    default all) into zero-mean ``size x size`` images ``(B, 1, size, size)`` (device and dtype
    of ``gradients``; solved on the CPU): the weighted least squares of
    :func:`scattered_system`."""
    _check_observations(coords, gradients, mask)
    out = np.zeros((coords.shape[0], size * size))
    for item in range(coords.shape[0]):
        points, values = _observed(coords, gradients, mask, item)
        out[item] = least_squares(*scattered_system(points, values, size, smooth_weight), eps)
    return tensor_like(out, gradients).reshape(-1, 1, size, size)


def tv_scattered(
    coords: torch.Tensor,
    gradients: torch.Tensor,
    mask: torch.Tensor | None,
    size: int,
    weight: float,
    iterations: int = 3000,
    smooth_weight: float = SMOOTH_WEIGHT,
) -> tuple[torch.Tensor, list[float]]:
    """TV-regularised :func:`scattered_integrate` of one image (``coords``, ``gradients
    (1, M, 2)``): ``min_u sum_e w_e (A u - t)_e^2 / sum_e w_e t_e^2 + weight * TV(u)`` on
    :func:`scattered_system`, from the least-squares solution (:func:`.baselines.pdhg_tv`).
    Returns the zero-mean image ``(1, 1, size, size)`` and the objective per iteration."""
    _check_observations(coords, gradients, mask)
    if coords.shape[0] != 1:
        raise ValueError(f"tv_scattered takes one image, got a batch of {coords.shape[0]}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    points, values = _observed(coords, gradients, mask, 0)
    matrix, target, weights = scattered_system(points, values, size, smooth_weight)
    start = numpy_of(scattered_integrate(coords, gradients.double(), mask, size,
                                         smooth_weight)).reshape(-1)
    image, objective = pdhg_tv(matrix, target, weights, size, weight, iterations, start,
                               nonnegative=False)
    return tensor_like(image - image.mean(), gradients).reshape(1, 1, size, size), objective
