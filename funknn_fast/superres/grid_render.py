"""Shared-computation rendering of FunkNN's ``variant="lattice"`` on a pixel grid.

:func:`render_grid` maps a low-resolution image (B, C, h, w) to (B, C, H, W): output pixel
(i, j) is the model queried at its centre, x = (2 j + 1) / W - 1, y = (2 i + 1) / H - 1
(``grid_sample(align_corners=False)`` convention, as ``inference.render``), and the result equals
per-query evaluation ``model(coords, image)`` up to float rounding (tests/superres/
test_grid_render.py: 1e-5 relative in float32, 1e-10 in float64).

Why it is exact. In input pixel units (pixel k centred at k) output column j sits at
px_j = (j + 1/2) w / W - 1/2. With g = gcd(w, W), a = w / g, b = W / g, this is
px_j = ((2c + 1) a - b) / (2b) + a m for j = c + b m (c in [0, b), m in [0, g)): the b
"phase classes" c each hold g columns spaced a whole input pixels apart (rows likewise). The
lattice variant's patch of a query at (px, py) is the image Keys-resampled at (px + i, py + j),
i, j in [-(p-1)/2, (p-1)/2], and its per-patch network is a sliding-window function of those
samples (``funknn_fast.models.lattice``), so for a class (c_x, c_y) all its queries read one
lattice image L[l, k] = Keys(image)(o_x + k, o_y + l) (o = the class origin), which is resampled
once (separably, with ``ops.reference.axis_taps``: the same taps, weights and padding rule as
``patch_sample``), run through the convolutional trunk once, sub-sampled every a lattice points,
and only the 1x1 head runs per query; the centre-sample residual is L at the query's point.
The work is split in tiles of ``tile`` x ``tile`` queries per class (memory O(tile^2 a^2 F),
a few MB), so the output can be arbitrarily large.

Cost per output pixel (:func:`share_plan`): TRUNK_MACS_PER_POINT * (a_x (T_x - 1) + p) / T_x *
(a_y (T_y - 1) + p) / T_y + HEAD_MACS, with T = min(tile, g) queries per tile side; for an
integer upscale (a = 1) and the default tile 64 that is 112,320 * (72/64)^2 + 8,384 = 150 K
(0.12 M as the tile grows), against 1.38 M per query. Scales with a small numerator a
(x2, x3, x4, x8: a = 1; x1.5, x2.5, x3.5: a = 2) are shared; when the shared cost is not below the
per-query cost (large a, e.g. 256 -> 845 pixels: a = 256, g = 1, one query per class) the plan
says so and the caller evaluates per query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from funknn_fast.models.lattice import head_macs, per_query_macs, trunk_macs_per_point
from funknn_fast.ops.reference import axis_taps

DEFAULT_TILE = 64


@dataclass(frozen=True)
class SharePlan:
    """How a (h, w) -> (H, W) render is evaluated, and its multiply-adds per output pixel."""

    shared: bool
    macs_per_pixel: float  # of the chosen path
    shared_macs_per_pixel: float
    per_query_macs: float
    step: tuple[int, int]  # (a_y, a_x): lattice points between queries of a class
    classes: tuple[int, int]  # (b_y, b_x): phase classes per axis
    per_class: tuple[int, int]  # (g_y, g_x): queries per class and axis


def _axis(n_in: int, n_out: int) -> tuple[int, int, int]:
    g = math.gcd(n_in, n_out)
    return n_in // g, n_out // g, g


def share_plan(model: nn.Module, in_size: tuple[int, int], out_size: tuple[int, int],
               tile: int = DEFAULT_TILE) -> SharePlan:
    """The plan of rendering an ``in_size`` = (h, w) image at ``out_size`` = (H, W)."""
    p = model.patch_size
    channels = model.channels
    (a_y, b_y, g_y), (a_x, b_x, g_x) = _axis(in_size[0], out_size[0]), _axis(in_size[1],
                                                                             out_size[1])
    span = 1.0
    for a, g in ((a_y, g_y), (a_x, g_x)):
        t = min(tile, g)
        span *= (a * (t - 1) + p) / t
    shared = trunk_macs_per_point(channels, p) * span + head_macs(channels)
    single = float(per_query_macs(channels, p))
    use = shared < single
    return SharePlan(use, shared if use else single, shared, single, (a_y, a_x), (b_y, b_x),
                     (g_y, g_x))


def _resample_axis(image: torch.Tensor, positions: torch.Tensor, dim: int,
                   padding: str) -> torch.Tensor:
    """Keys-cubic resampling of ``image`` along ``dim`` (2 or 3) at float64 ``positions`` (L,)."""
    size = image.shape[dim]
    index, valid, weights = axis_taps(positions, size, padding)  # (L, 4) each
    weights = (weights * valid.to(weights.dtype)).to(image.dtype)
    taps = image.index_select(dim, index.reshape(-1))
    if dim == 3:
        taps = taps.unflatten(3, (-1, 4))  # (B, C, h, L, 4)
        return (taps * weights).sum(-1)
    taps = taps.unflatten(2, (-1, 4))  # (B, C, L, 4, W)
    return (taps * weights[:, :, None]).sum(3)


def _positions(c: int, a: int, b: int, first: int, last: int, radius: int,
               device: torch.device) -> torch.Tensor:
    """Lattice positions (float64) of class c covering queries m = first .. last plus a halo."""
    origin = ((2 * c + 1) * a - b) / (2 * b)
    t = torch.arange(a * first - radius, a * last + radius + 1, dtype=torch.float64,
                     device=device)
    return origin + t


def render_grid(model: nn.Module, image: torch.Tensor, out_size: tuple[int, int],
                tile: int = DEFAULT_TILE, progress: bool = False) -> torch.Tensor:
    """Renders ``image`` (B, C, h, w) at ``out_size`` = (H, W) with shared computation.

    ``model`` is a FunkNN with ``variant="lattice"`` (unit patch spacing). Evaluated as is (no
    grad mode change): call it under ``torch.inference_mode()`` for rendering. ``progress``: a
    tqdm bar over the bands of output rows (one row phase class, ``tile`` rows of it).
    """
    if getattr(model, "variant", None) != "lattice":
        raise ValueError("render_grid needs a FunkNN with variant='lattice'")
    if not torch.all(model.step.detach() == 1):
        raise ValueError(f"render_grid needs the lattice variant's unit step, got {model.step}")
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != model.channels:
        raise ValueError(f"image must have shape (B, {model.channels}, h, w)")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive int, got {tile!r}")
    height, width = int(out_size[0]), int(out_size[1])
    if height < 1 or width < 1:
        raise ValueError(f"out_size must be positive, got {out_size!r}")
    net = model.lattice
    p = model.patch_size
    r = p // 2
    scale = net.input_scale
    batch, channels, h, w = image.shape
    (a_y, b_y, g_y), (a_x, b_x, g_x) = _axis(h, height), _axis(w, width)
    out = image.new_empty(batch, channels, height, width)
    device = image.device
    bands = [(c_y, m_y) for c_y in range(b_y) for m_y in range(0, g_y, tile)]
    if progress:
        from tqdm import tqdm

        bands = tqdm(bands, desc=f"render {height}x{width}", unit="band", leave=False)
    for c_y, m_y in bands:
        n_y = min(tile, g_y - m_y)
        pos_y = _positions(c_y, a_y, b_y, m_y, m_y + n_y - 1, r, device)
        rows = _resample_axis(image, pos_y, 2, model.padding)  # (B, C, Ly, w)
        for c_x in range(b_x):
            for m_x in range(0, g_x, tile):
                n_x = min(tile, g_x - m_x)
                pos_x = _positions(c_x, a_x, b_x, m_x, m_x + n_x - 1, r, device)
                lattice = _resample_axis(rows, pos_x, 3, model.padding)  # (B, C, Ly, Lx)
                features = net.trunk(scale * lattice)[:, :, ::a_y, ::a_x]
                centre = lattice[:, :, r : r + a_y * (n_y - 1) + 1 : a_y,
                                 r : r + a_x * (n_x - 1) + 1 : a_x]
                values = net.head(features) + centre
                out[:, :, c_y + b_y * m_y : c_y + b_y * (m_y + n_y - 1) + 1 : b_y,
                    c_x + b_x * m_x : c_x + b_x * (m_x + n_x - 1) + 1 : b_x] = values
    return out
