"""Filtered back-projection (FBP) for the parallel-beam geometry of :mod:`.radon`.

``fbp(sinogram (B, C, A, S), angles (A,), positions (S,), size) -> (B, C, size, size)``, the image
on the ``size x size`` pixel centres of ``[-1, 1]^2`` (``grid_sample(align_corners=False)``
convention, ``x`` columns, ``y`` rows). Detector positions must be evenly spaced. Each
projection is convolved with the band-limited ramp filter (Ram-Lak spatial kernel, Kak & Slaney
eq. 61, optionally apodised by a Hann window), then back-projected with linear interpolation
in ``s``; each angle is weighted by the mean angular spacing (``pi / A`` for ``A`` angles evenly
covering ``[0, pi)``).
"""

from __future__ import annotations

import math

import torch

from funknn_fast.prior.phantoms import pixel_centers

FILTERS = ("ram-lak", "hann")


def ramp_filter(sinogram: torch.Tensor, spacing: float, window: str = "ram-lak") -> torch.Tensor:
    """Convolve the last axis of ``sinogram`` with the discrete ramp filter (times ``spacing``)."""
    if window not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {window!r}")
    bins = sinogram.shape[-1]
    size = 1 << math.ceil(math.log2(2 * bins - 1))
    offsets = torch.arange(size, dtype=sinogram.dtype, device=sinogram.device)
    offsets = torch.where(offsets < size // 2, offsets, offsets - size)
    kernel = torch.zeros(size, dtype=sinogram.dtype, device=sinogram.device)
    odd = offsets.remainder(2) == 1
    kernel[odd] = -1.0 / (math.pi**2 * offsets[odd] ** 2 * spacing**2)
    kernel[0] = 1.0 / (4.0 * spacing**2)
    response = torch.fft.rfft(kernel).real
    if window == "hann":
        frequency = torch.fft.rfftfreq(size, device=sinogram.device).to(sinogram.dtype)
        response = response * (0.5 + 0.5 * torch.cos(2.0 * math.pi * frequency))
    padded = torch.fft.rfft(sinogram, n=size, dim=-1) * response
    return torch.fft.irfft(padded, n=size, dim=-1)[..., :bins] * spacing


def back_project(
    filtered: torch.Tensor, angles: torch.Tensor, positions: torch.Tensor, size: int
) -> torch.Tensor:
    """Sum over angles of ``filtered (B, C, A, S)`` at ``s = x cos(theta) + y sin(theta)``."""
    batch, channels, count, bins = filtered.shape
    spacing = float(positions[1] - positions[0]) if bins > 1 else 1.0
    grid = pixel_centers(size, 1, filtered.dtype, filtered.device)[0]  # (P, 2)
    theta = angles.to(device=filtered.device, dtype=filtered.dtype)
    s = grid[:, 0:1] * torch.cos(theta) + grid[:, 1:2] * torch.sin(theta)  # (P, A)
    index = (s - float(positions[0])) / spacing
    low = index.floor().clamp(-1, bins - 1)
    weight = (index - low).clamp(0.0, 1.0)
    low = low.long()
    high = low + 1
    valid_low = ((low >= 0) & (low < bins)).to(filtered.dtype)
    valid_high = ((high >= 0) & (high < bins)).to(filtered.dtype)
    flat = filtered.reshape(batch * channels, count * bins)
    angle_offset = torch.arange(count, device=filtered.device) * bins

    def take(idx: torch.Tensor) -> torch.Tensor:
        gathered = (idx.clamp(0, bins - 1) + angle_offset).reshape(1, -1)
        return flat.gather(1, gathered.expand(flat.shape[0], -1)).reshape(-1, *idx.shape)

    values = take(low) * ((1.0 - weight) * valid_low) + take(high) * (weight * valid_high)
    if count > 1:
        span = float(theta.max() - theta.min())
        step = span / (count - 1)
    else:
        step = math.pi
    image = values.sum(-1) * step
    return image.reshape(batch, channels, size, size)


def fbp(
    sinogram: torch.Tensor,
    angles: torch.Tensor,
    positions: torch.Tensor,
    size: int,
    filter: str = "ram-lak",
) -> torch.Tensor:
    """Filtered back-projection of ``sinogram (B, C, A, S)``: image ``(B, C, size, size)``."""
    if sinogram.dim() != 4:
        raise ValueError(f"sinogram must have shape (B, C, A, S), got {tuple(sinogram.shape)}")
    if sinogram.shape[2] != angles.numel() or sinogram.shape[3] != positions.numel():
        raise ValueError(
            f"sinogram {tuple(sinogram.shape)} does not match {angles.numel()} angles and "
            f"{positions.numel()} positions"
        )
    if positions.numel() < 2:
        raise ValueError("positions must hold at least 2 evenly spaced detector bins")
    gaps = positions[1:] - positions[:-1]
    if not torch.allclose(gaps, gaps[0].expand_as(gaps), rtol=1e-4, atol=1e-7):
        raise ValueError("positions must be evenly spaced")
    filtered = ramp_filter(sinogram, float(gaps[0]), filter)
    return back_project(filtered, angles, positions, size)
