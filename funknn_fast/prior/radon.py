"""Parallel-beam Radon transform of continuous images, by sampling along rays.

Geometry (coordinates of ``F.grid_sample(align_corners=False)``: the image covers ``[-1, 1]^2``,
``x`` the column direction, ``y`` the row direction). For an angle ``theta`` (radians) the
projection normal is ``n = (cos theta, sin theta)`` and the ray at detector position ``s`` is
``{s n + t n_perp}``, ``n_perp = (-sin theta, cos theta)``:

    (R f)(theta, s) = integral f(s n + t n_perp) dt.

Rays are clipped to the square ``[-support, support]^2`` (the image's support) and integrated
with the midpoint rule over ``samples_per_ray`` points on the clipped segment.

* :func:`radon` takes any function ``coords (B, Q, 2) -> values (B, Q, C)`` (a phantom, a
  FunkNN model bound to generated images, :func:`image_function` of a grid) and returns the
  sinogram ``(B, C, A, S)``; batched, chunked over rays (optionally with activation
  checkpointing per chunk), differentiable in whatever the function depends on.
* :func:`ellipse_projection`, :func:`gaussian_function`, :func:`gaussian_projection`: closed forms
  used to test it. Ellipses and Gaussians use the ``(B, K, 6)`` layout of
  :mod:`funknn_fast.prior.phantoms`: ``(amplitude, cx, cy, a, b, phi)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as activation_checkpoint

ContinuousImage = Callable[[torch.Tensor], torch.Tensor]


def detector_positions(
    bins: int,
    extent: float = math.sqrt(2.0),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Centres ``(bins,)`` of ``bins`` equal detector cells covering ``[-extent, extent]``, on
    ``device`` (``None``: the CPU)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if extent <= 0:
        raise ValueError(f"extent must be > 0, got {extent}")
    return ((2.0 * torch.arange(bins, dtype=dtype, device=device) + 1.0) / bins - 1.0) * extent


def limited_angles(
    count: int,
    low_degrees: float = -70.0,
    high_degrees: float = 70.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``count`` angles (radians) evenly spaced over ``[low, high]`` degrees, both included, on
    ``device`` (``None``: the CPU)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if count == 1:
        return torch.tensor([math.radians(0.5 * (low_degrees + high_degrees))], device=device)
    return torch.deg2rad(
        torch.linspace(low_degrees, high_degrees, count, dtype=torch.float64, device=device)
    )


def full_angles(count: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``count`` angles (radians) evenly spaced over ``[0, pi)``, on ``device`` (``None``: CPU)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return torch.arange(count, dtype=torch.float64, device=device) * (math.pi / count)


def ray_points(
    angles: torch.Tensor, positions: torch.Tensor, samples_per_ray: int, support: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample points ``(A * S, samples_per_ray, 2)`` and segment lengths ``(A * S,)`` of all rays,
    in the dtype and on the device of ``positions``.

    Rays are ordered angle-major. A ray that misses the square has length 0.
    """
    if samples_per_ray < 1:
        raise ValueError(f"samples_per_ray must be >= 1, got {samples_per_ray}")
    if support <= 0:
        raise ValueError(f"support must be > 0, got {support}")
    dtype = positions.dtype
    theta = angles.to(device=positions.device, dtype=dtype).reshape(-1, 1)
    s = positions.reshape(1, -1)
    cos_t, sin_t = torch.cos(theta), torch.sin(theta)
    origin_x, origin_y = s * cos_t, s * sin_t  # (A, S)
    dir_x, dir_y = (-sin_t).expand_as(origin_x), cos_t.expand_as(origin_y)
    low = torch.full_like(origin_x, -math.inf)
    high = torch.full_like(origin_x, math.inf)
    for origin, direction in ((origin_x, dir_x), (origin_y, dir_y)):
        moving = direction.abs() > 1e-12
        safe = torch.where(moving, direction, torch.ones_like(direction))
        t_a, t_b = (-support - origin) / safe, (support - origin) / safe
        axis_low = torch.where(moving, torch.minimum(t_a, t_b), torch.full_like(t_a, -math.inf))
        axis_high = torch.where(moving, torch.maximum(t_a, t_b), torch.full_like(t_b, math.inf))
        outside = ~moving & (origin.abs() > support)
        axis_high = torch.where(outside, torch.full_like(axis_high, -math.inf), axis_high)
        low, high = torch.maximum(low, axis_low), torch.minimum(high, axis_high)
    length = (high - low).clamp_min(0.0)
    start = torch.where(length > 0, low, torch.zeros_like(low))
    steps = torch.arange(samples_per_ray, dtype=dtype, device=positions.device)
    fractions = (steps + 0.5) / samples_per_ray
    t = start.unsqueeze(-1) + length.unsqueeze(-1) * fractions  # (A, S, M)
    points_x = origin_x.unsqueeze(-1) + t * dir_x.unsqueeze(-1)
    points_y = origin_y.unsqueeze(-1) + t * dir_y.unsqueeze(-1)
    points = torch.stack([points_x, points_y], dim=-1)
    return points.reshape(-1, samples_per_ray, 2), length.reshape(-1)


def radon(
    function: ContinuousImage,
    angles: torch.Tensor,
    positions: torch.Tensor,
    batch: int = 1,
    samples_per_ray: int = 256,
    chunk_size: int = 1 << 16,
    support: float = 1.0,
    checkpoint: bool = False,
) -> torch.Tensor:
    """Sinogram ``(batch, C, A, S)`` of ``function`` at ``angles (A,)`` and ``positions (S,)``.

    ``function`` maps coordinates ``(batch, Q, 2)`` (dtype and device of ``positions``) to
    values ``(batch, Q, C)``. It is called on chunks of at most ``chunk_size`` points per batch
    element (whole rays). ``checkpoint=True`` recomputes each chunk in the backward pass, so the
    memory held for autograd is one chunk's activations.
    """
    if angles.dim() != 1 or positions.dim() != 1:
        raise ValueError(
            f"angles and positions must be 1-D, got {tuple(angles.shape)}, {tuple(positions.shape)}"
        )
    if not positions.is_floating_point():
        raise TypeError(f"positions must have a floating dtype, got {positions.dtype}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if chunk_size < samples_per_ray:
        raise ValueError(
            f"chunk_size ({chunk_size}) must be >= samples_per_ray ({samples_per_ray})"
        )
    points, length = ray_points(angles.to(positions.device), positions, samples_per_ray, support)
    rays = points.shape[0]
    rays_per_chunk = max(1, chunk_size // samples_per_ray)

    def integrate(chunk_points: torch.Tensor, chunk_length: torch.Tensor) -> torch.Tensor:
        count = chunk_points.shape[0]
        coords = chunk_points.reshape(1, -1, 2).expand(batch, -1, -1)
        values = function(coords)
        if values.dim() != 3 or values.shape[:2] != (batch, count * samples_per_ray):
            raise ValueError(
                f"function must return (B, Q, C) = ({batch}, {count * samples_per_ray}, C), "
                f"got {tuple(values.shape)}"
            )
        values = values.reshape(batch, count, samples_per_ray, -1)
        return values.mean(dim=2) * chunk_length.reshape(1, -1, 1).to(values.dtype)

    pieces = []
    for start in range(0, rays, rays_per_chunk):
        chunk = (points[start : start + rays_per_chunk], length[start : start + rays_per_chunk])
        if checkpoint and torch.is_grad_enabled():
            pieces.append(activation_checkpoint(integrate, *chunk, use_reentrant=False))
        else:
            pieces.append(integrate(*chunk))
    sinogram = torch.cat(pieces, dim=1)  # (B, A * S, C)
    return sinogram.reshape(batch, angles.shape[0], positions.shape[0], -1).permute(0, 3, 1, 2)


def image_function(image: torch.Tensor, mode: str = "bilinear") -> ContinuousImage:
    """A grid image ``(B, C, H, W)`` as a continuous function (zero outside ``[-1, 1]^2``)."""
    if image.dim() != 4:
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}")

    def function(coords: torch.Tensor) -> torch.Tensor:
        grid = coords.to(image.dtype).unsqueeze(1)  # (B, 1, Q, 2)
        values = F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=False)
        return values[:, :, 0].transpose(1, 2)

    return function


def _unpack(params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if params.dim() != 3 or params.shape[-1] != 6:
        raise ValueError(f"params must have shape (B, K, 6), got {tuple(params.shape)}")
    return tuple(params[..., i].reshape(params.shape[0], params.shape[1], 1, 1) for i in range(6))


def _projection_geometry(
    params: torch.Tensor, angles: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    amplitude, cx, cy, a, b, phi = _unpack(params.to(positions.dtype))
    used = (a > 0) & (b > 0)
    amplitude = torch.where(used, amplitude, torch.zeros_like(amplitude))
    a, b = torch.where(used, a, torch.ones_like(a)), torch.where(used, b, torch.ones_like(b))
    theta = angles.to(positions.dtype).reshape(1, 1, -1, 1)
    s = positions.reshape(1, 1, 1, -1)
    offset = s - (cx * torch.cos(theta) + cy * torch.sin(theta))  # (B, K, A, S)
    width2 = (a * torch.cos(theta - phi)) ** 2 + (b * torch.sin(theta - phi)) ** 2
    return amplitude, a, b, offset, width2


def ellipse_projection(
    params: torch.Tensor, angles: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Exact sinogram ``(B, 1, A, S)`` of sharp ellipses (``edge_width = 0`` phantoms)."""
    amplitude, a, b, offset, width2 = _projection_geometry(params, angles, positions)
    chord = 2.0 * a * b * torch.sqrt((width2 - offset**2).clamp_min(0.0)) / width2
    return (amplitude * chord).sum(1, keepdim=True)


def gaussian_function(params: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Anisotropic Gaussians ``(amplitude, cx, cy, sigma_a, sigma_b, phi)`` at ``coords (B, Q, 2)``.

    Returns ``(B, Q, 1)``: the sum over ``K`` of
    ``amplitude * exp(-u^2 / (2 sigma_a^2) - v^2 / (2 sigma_b^2))`` in the rotated frame.
    """
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B, Q, 2), got {tuple(coords.shape)}")
    amplitude, cx, cy, sa, sb, phi = (p[..., 0].transpose(1, 2) for p in _unpack(params))
    amplitude, cx, cy, sa, sb, phi = (p.to(coords.dtype) for p in (amplitude, cx, cy, sa, sb, phi))
    dx, dy = coords[..., 0:1] - cx, coords[..., 1:2] - cy
    u = dx * torch.cos(phi) + dy * torch.sin(phi)
    v = -dx * torch.sin(phi) + dy * torch.cos(phi)
    return (amplitude * torch.exp(-0.5 * (u / sa) ** 2 - 0.5 * (v / sb) ** 2)).sum(-1, keepdim=True)


def gaussian_projection(
    params: torch.Tensor, angles: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Exact sinogram ``(B, 1, A, S)`` of :func:`gaussian_function` over the whole plane."""
    amplitude, a, b, offset, width2 = _projection_geometry(params, angles, positions)
    line = amplitude * math.sqrt(2.0 * math.pi) * a * b / torch.sqrt(width2)
    return (line * torch.exp(-0.5 * offset**2 / width2)).sum(1, keepdim=True)
