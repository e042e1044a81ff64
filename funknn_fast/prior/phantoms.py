"""Random-ellipse phantoms: seeded, deterministic, continuous, with train/test splits.

A phantom is a sum of ``K`` ellipses, each a plateau of intensity ``rho`` with a smooth edge of
width ``edge_width`` (coordinate units; 0 gives a sharp indicator). Ellipse parameters are a tensor
``(B, K, 6)`` of ``(rho, cx, cy, a, b, phi)``: centre ``(cx, cy)``, semi-axes ``a`` (along the
direction ``phi``) and ``b``, rotation ``phi`` in radians. Unused slots are all zeros
(a slot with ``a <= 0`` or ``b <= 0`` is ignored).

Coordinates follow ``F.grid_sample(align_corners=False)``: the image covers ``[-1, 1]^2``, ``x`` is
the column direction, ``y`` the row direction; pixel ``k`` of an ``n``-pixel axis is centred at
``(2k + 1) / n - 1``. Phantoms lie inside the unit disc, so they vanish near the square's border.

* :func:`phantom_parameters` (index list, split, seed) -> ``(B, K, 6)``, deterministic per index.
* :func:`ellipse_function` (params, coords ``(B, Q, 2)``) -> ``(B, Q, 1)``, differentiable in both
  to any order (autograd gives the exact gradient of the continuous phantom).
* :func:`rasterize` (params, size) -> ``(B, 1, size, size)`` sampled at pixel centres.
* :class:`EllipsePhantoms` a map-style dataset of rasterized phantoms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

SPLITS = {"train": 0, "test": 1, "validation": 2}
MAX_ELLIPSES = 12
DEFAULT_EDGE_WIDTH = 0.02


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def phantom_parameters(
    indices: Sequence[int] | int,
    split: str = "train",
    seed: int = 0,
    max_ellipses: int = MAX_ELLIPSES,
) -> torch.Tensor:
    """Ellipse parameters ``(B, max_ellipses, 6)`` float64 for the given phantom indices.

    Phantom ``i`` of a split depends only on ``(seed, split, i)``: the splits never share a
    random stream. ``"validation"`` is for every tuning decision of the inverse problems,
    ``"test"`` for the final tables only (issue 16). Each phantom has a body ellipse
    (intensity in [0.6, 1], semi-axes in [0.55, 0.85]) and 1 .. ``max_ellipses - 2`` inner
    ellipses (intensity in [-0.4, 0.4], semi-axes in [0.06, 0.3]) whose centres lie inside the
    body; all lie inside the unit disc.
    """
    if isinstance(indices, int):
        indices = [indices]
    if max_ellipses < 3:
        raise ValueError(f"max_ellipses must be >= 3, got {max_ellipses}")
    split_id = _check_split(split)
    out = np.zeros((len(indices), max_ellipses, 6))
    for row, index in enumerate(indices):
        if index < 0:
            raise ValueError(f"phantom indices must be >= 0, got {index}")
        rng = np.random.default_rng([seed, split_id, int(index)])
        body_a, body_b = rng.uniform(0.55, 0.85, size=2)
        body_phi = rng.uniform(0, math.pi)
        body_c = rng.uniform(-0.08, 0.08, size=2)
        out[row, 0] = (rng.uniform(0.6, 1.0), body_c[0], body_c[1], body_a, body_b, body_phi)
        count = rng.integers(2, max_ellipses)
        for k in range(1, count):
            radius = np.sqrt(rng.uniform(0, 1)) * 0.65
            angle = rng.uniform(0, 2 * math.pi)
            ux, uy = radius * math.cos(angle), radius * math.sin(angle)
            cos_b, sin_b = math.cos(body_phi), math.sin(body_phi)
            cx = body_c[0] + body_a * ux * cos_b - body_b * uy * sin_b
            cy = body_c[1] + body_a * ux * sin_b + body_b * uy * cos_b
            a, b = rng.uniform(0.06, 0.3, size=2)
            out[row, k] = (rng.uniform(-0.4, 0.4), cx, cy, a, b, rng.uniform(0, math.pi))
    return torch.from_numpy(out)


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * t * (t * (6.0 * t - 15.0) + 10.0)


def ellipse_function(
    params: torch.Tensor, coords: torch.Tensor, edge_width: float = DEFAULT_EDGE_WIDTH
) -> torch.Tensor:
    """Evaluate phantoms ``params (B, K, 6)`` at ``coords (B, Q, 2)``; returns ``(B, Q, 1)``.

    Each ellipse contributes ``rho * s(d)`` where ``d = (r^2 - 1) / |grad r^2|`` is the first-order
    signed distance to its boundary (``r^2`` the normalised quadratic form) and ``s`` the quintic
    smoothstep from 1 at ``d = -edge_width / 2`` to 0 at ``d = edge_width / 2`` (C2). With
    ``edge_width = 0`` the ellipse is the sharp indicator of ``r < 1``.
    """
    if params.dim() != 3 or params.shape[-1] != 6:
        raise ValueError(f"params must have shape (B, K, 6), got {tuple(params.shape)}")
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B, Q, 2), got {tuple(coords.shape)}")
    if coords.shape[0] != params.shape[0]:
        raise ValueError(
            f"coords batch {coords.shape[0]} does not match params batch {params.shape[0]}"
        )
    if edge_width < 0:
        raise ValueError(f"edge_width must be >= 0, got {edge_width}")
    params = params.to(coords.dtype)
    rho, cx, cy, a, b, phi = (params[..., i].unsqueeze(1) for i in range(6))  # (B, 1, K)
    used = (a > 0) & (b > 0)
    rho = torch.where(used, rho, torch.zeros_like(rho))
    a, b = torch.where(used, a, torch.ones_like(a)), torch.where(used, b, torch.ones_like(b))
    dx = coords[..., 0:1] - cx  # (B, Q, K)
    dy = coords[..., 1:2] - cy
    cos_p, sin_p = torch.cos(phi), torch.sin(phi)
    u = (dx * cos_p + dy * sin_p) / a
    v = (-dx * sin_p + dy * cos_p) / b
    r2 = u * u + v * v
    if edge_width == 0:
        inside = (r2 < 1.0).to(coords.dtype)
        return (rho * inside).sum(-1, keepdim=True)
    grad_norm = 2.0 * torch.sqrt((u / a) ** 2 + (v / b) ** 2 + 1e-12)
    distance = (r2 - 1.0) / grad_norm
    profile = _smoothstep(0.5 - distance / edge_width)
    return (rho * profile).sum(-1, keepdim=True)


def pixel_centers(
    size: int,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel-centre coordinates ``(batch, size * size, 2)`` of a ``size x size`` grid, row-major,
    on ``device`` (``None``: the CPU)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    axis = (2.0 * torch.arange(size, dtype=dtype, device=device) + 1.0) / size - 1.0
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
    return grid.unsqueeze(0).expand(batch, -1, -1).contiguous()


def rasterize(
    params: torch.Tensor,
    size: int,
    edge_width: float = DEFAULT_EDGE_WIDTH,
    supersample: int = 1,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Phantoms ``(B, K, 6)`` on a ``size x size`` grid: ``(B, 1, size, size)`` on the device of
    ``params``.

    Each pixel is the mean of ``supersample^2`` point samples spread evenly over the pixel
    (``supersample = 1``: the value at the pixel centre), computed in ``dtype``.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    batch = params.shape[0]
    fine = pixel_centers(size * supersample, batch, dtype, params.device)
    values = ellipse_function(params, fine, edge_width).reshape(
        batch, 1, size, supersample, size, supersample
    )
    return values.mean(dim=(3, 5)).to(dtype)


class EllipsePhantoms(torch.utils.data.Dataset):
    """``length`` rasterized phantoms ``(1, size, size)`` of a split; item i is phantom i."""

    def __init__(
        self,
        length: int,
        size: int,
        split: str = "train",
        seed: int = 0,
        edge_width: float = DEFAULT_EDGE_WIDTH,
        supersample: int = 2,
    ) -> None:
        _check_split(split)
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length, self.size, self.split, self.seed = length, size, split, seed
        self.edge_width, self.supersample = edge_width, supersample

    def __len__(self) -> int:
        return self.length

    def parameters(self, indices: Sequence[int]) -> torch.Tensor:
        return phantom_parameters(indices, self.split, self.seed)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Rasterized phantoms ``(len(indices), 1, size, size)``."""
        return rasterize(self.parameters(indices), self.size, self.edge_width, self.supersample)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} phantoms")
        return self.images([index])[0]
