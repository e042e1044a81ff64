"""Least-squares (Poisson) integration of observed gradients: the derivative-inversion baseline.

Given gradients ``gx = du/dx`` (columns) and ``gy = du/dy`` (rows) sampled at the ``n x n`` pixel
centres of ``[-1, 1]^2`` (``grid_sample(align_corners=False)`` convention, pixel spacing
``h = 2 / n``) and a mask of the observed pixels, find the image ``u (n, n)`` minimising

    sum_edges w_e (u[q] - u[p] - h (g[p] + g[q]) / 2)^2 + eps ||u - mean(u)||^2

over the horizontal and vertical edges between neighbouring pixels (trapezoidal rule). An edge
has weight 1 when both ends are observed, ``missing_weight`` otherwise (then its target uses the
observed end's gradient, or 0); ``eps`` (tiny) only pins the unidentifiable constant. The mean
of the result is 0: compare with the shift-invariant SNR. Solved with a sparse direct solver.

scipy runs on the CPU: :func:`numpy_of` copies a tensor there, :func:`tensor_like` brings a
result back to the device (and dtype) of the input, so the baselines take and return tensors on
any device (:mod:`.baselines` uses the same two).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch


def numpy_of(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` as a float64 numpy array (copied to the CPU, where scipy runs)."""
    return tensor.detach().cpu().double().numpy()


def tensor_like(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """The numpy ``array`` as a tensor on the device and with the dtype of ``like``."""
    return torch.from_numpy(array).to(device=like.device, dtype=like.dtype)


def _edge_system(
    gradient: np.ndarray, mask: np.ndarray, axis: int, spacing: float, missing_weight: float
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    n_rows, n_cols = mask.shape
    index = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    first = [slice(None), slice(None)]
    second = [slice(None), slice(None)]
    first[axis], second[axis] = slice(None, -1), slice(1, None)
    p, q = index[tuple(first)].ravel(), index[tuple(second)].ravel()
    g = np.where(mask, gradient, 0.0)
    obs_p, obs_q = mask[tuple(first)].ravel(), mask[tuple(second)].ravel()
    g_p, g_q = g[tuple(first)].ravel(), g[tuple(second)].ravel()
    both = obs_p & obs_q
    count = obs_p.astype(float) + obs_q.astype(float)
    mean = np.where(count > 0, (g_p + g_q) / np.maximum(count, 1.0), 0.0)
    target = spacing * mean
    weight = np.where(both, 1.0, missing_weight)
    rows = np.arange(p.size)
    matrix = sp.csr_matrix(
        (np.concatenate([-np.ones(p.size), np.ones(p.size)]),
         (np.concatenate([rows, rows]), np.concatenate([p, q]))),
        shape=(p.size, n_rows * n_cols),
    )
    return matrix, target, weight


def poisson_system(
    gradient: np.ndarray, mask: np.ndarray, missing_weight: float = 1e-2
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The edge system of one image: ``matrix (E, n_rows * n_cols)`` (finite differences
    ``u[q] - u[p]`` of the row-major image), ``target (E,)`` and ``weight (E,)``, horizontal
    edges first. ``gradient (2, n_rows, n_cols)`` (``d/dx``, ``d/dy``), ``mask (n_rows, n_cols)``.
    """
    n_rows, n_cols = mask.shape
    blocks, targets, weights = [], [], []
    for axis, component, spacing in ((1, 0, 2.0 / n_cols), (0, 1, 2.0 / n_rows)):
        matrix, target, weight = _edge_system(
            gradient[component], mask, axis, spacing, missing_weight
        )
        blocks.append(matrix)
        targets.append(target)
        weights.append(weight)
    return sp.vstack(blocks).tocsr(), np.concatenate(targets), np.concatenate(weights)


def poisson_integrate(
    gradients: torch.Tensor,
    mask: torch.Tensor | None = None,
    missing_weight: float = 1e-2,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Integrate ``gradients (B, 2, n, n)`` (``d/dx``, ``d/dy``) into images ``(B, 1, n, n)``.

    ``mask (B, n, n)`` (bool) marks observed pixels (default: all). Result has zero mean, on
    the device and with the dtype of ``gradients`` (solved on the CPU).
    """
    if gradients.dim() != 4 or gradients.shape[1] != 2:
        raise ValueError(f"gradients must have shape (B, 2, n, n), got {tuple(gradients.shape)}")
    batch, _, n_rows, n_cols = gradients.shape
    if mask is None:
        mask = torch.ones(batch, n_rows, n_cols, dtype=torch.bool, device=gradients.device)
    if mask.shape != (batch, n_rows, n_cols):
        raise ValueError(f"mask must have shape {(batch, n_rows, n_cols)}, got {tuple(mask.shape)}")
    if missing_weight < 0 or eps <= 0:
        raise ValueError(f"need missing_weight >= 0 and eps > 0, got {missing_weight}, {eps}")
    grads = numpy_of(gradients)
    masks = mask.detach().cpu().numpy().astype(bool)
    out = np.zeros((batch, n_rows, n_cols))
    for item in range(batch):
        system = poisson_system(grads[item], masks[item], missing_weight)
        out[item] = least_squares(*system, eps).reshape(n_rows, n_cols)
    return tensor_like(out, gradients).unsqueeze(1)


def least_squares(
    matrix: sp.csr_matrix, target: np.ndarray, weights: np.ndarray, eps: float = 1e-8
) -> np.ndarray:
    """Zero-mean minimiser ``u (N,)`` of ``sum_e w_e (M u - t)_e^2 + eps |u|^2`` (``M (E, N)``,
    ``target`` and ``weights (E,)``), by a sparse direct solve of the normal equations; ``eps``
    (tiny) only pins the unidentifiable constant."""
    weight = sp.diags(weights)
    normal = (matrix.T @ weight @ matrix + eps * sp.identity(matrix.shape[1])).tocsc()
    solution = spla.spsolve(normal, matrix.T @ (weight @ target))
    return solution - solution.mean()
