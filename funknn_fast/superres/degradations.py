"""Downscaling kernels (degradations) for training and evaluating super-resolution.

:func:`degrade` maps an image (C, H, W) or (B, C, H, W) to (..., h, w) with one of
:data:`KERNELS`; the low- and high-resolution images cover the same field of view (pixel
centres in the ``grid_sample(align_corners=False)`` convention). Kernels:

* ``bicubic``, ``lanczos``, ``area``: Pillow's ``Image.resize`` with ``BICUBIC`` (Keys a = -0.5),
  ``LANCZOS`` (a = 3) and ``BOX``, reproduced as separable resampling matrices
  (:func:`resize_matrix`: the filter is widened by the downscale factor, taps outside the image
  are dropped and the row renormalised, as Pillow does); equal to Pillow on float ("F") images to
  float rounding (tests/superres/test_degradations.py);
* ``antialiased``: the antialiased bilinear (triangle) resize of the paper and of
  ``data.downscale`` (= Pillow's ``BILINEAR``);
* ``bilinear``: plain bilinear interpolation at the output pixel centres, no antialiasing
  (``F.interpolate(mode="bilinear", antialias=False)``): aliased, like a naive resize;
* ``blur``: ``bicubic`` followed by a mild Gaussian blur of the low-resolution image, standard
  deviation ``blur_sigma`` low-resolution pixels (training draws it uniformly in
  :data:`BLUR_SIGMA_RANGE`; evaluation uses :data:`BLUR_SIGMA_EVAL`), reflected borders.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

KERNELS = ("bicubic", "bilinear", "area", "lanczos", "antialiased", "blur")
BLUR_SIGMA_RANGE = (0.3, 0.7)
BLUR_SIGMA_EVAL = 0.5


def _cubic(x: torch.Tensor) -> torch.Tensor:
    a = -0.5
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, torch.ones_like(x), torch.sin(math.pi * x) / (math.pi * x))


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, _sinc(x) * _sinc(x / 3), torch.zeros_like(x))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x >= -0.5) & (x < 0.5)).to(x.dtype)


# name -> (filter, support) as in Pillow's Resample.c
_FILTERS = {"bicubic": (_cubic, 2.0), "lanczos": (_lanczos, 3.0), "area": (_box, 0.5),
            "antialiased": (_triangle, 1.0)}


@functools.lru_cache(maxsize=256)
def resize_matrix(in_size: int, out_size: int, kernel: str) -> torch.Tensor:
    """(out_size, in_size) float64 matrix of Pillow's resampling along one axis (cached)."""
    filt, support = _FILTERS[kernel]
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = support * filter_scale
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    # Pillow's window [int(centre - support + 0.5), int(centre + support + 0.5)) clipped to the
    # image (int() truncates towards zero; the lower bound is clipped at 0 anyway)
    lo = torch.trunc(centre - support + 0.5).clamp(min=0)
    hi = torch.trunc(centre + support + 0.5).clamp(max=in_size)
    taps = torch.arange(in_size, dtype=torch.float64)
    inside = (taps[None] >= lo[:, None]) & (taps[None] < hi[:, None])
    weights = filt((taps[None] - centre[:, None] + 0.5) / filter_scale) * inside
    total = weights.sum(1, keepdim=True)
    return torch.where(total != 0, weights / torch.where(total != 0, total, 1.0), weights)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), standard deviation ``sigma`` pixels, reflected."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    taps = (taps / taps.sum()).to(image.dtype)
    channels = image.shape[1]
    pad_h = min(radius, image.shape[2] - 1)
    pad_w = min(radius, image.shape[3] - 1)
    x = image
    if pad_w > 0:
        x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
        x = F.conv2d(x, taps[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1)
                     .expand(channels, 1, 1, -1), groups=channels)
    if pad_h > 0:
        x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect")
        x = F.conv2d(x, taps[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1)
                     .expand(channels, 1, -1, 1), groups=channels)
    return x


def degrade(image: torch.Tensor, size: tuple[int, int], kernel: str = "bicubic",
            blur_sigma: float = BLUR_SIGMA_EVAL) -> torch.Tensor:
    """Downscales (C, H, W) or (B, C, H, W) to ``size`` = (h, w) with ``kernel`` (module doc)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    squeeze = image.dim() == 3
    x = image.unsqueeze(0) if squeeze else image
    height, width = int(size[0]), int(size[1])
    if kernel == "bilinear":
        out = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    else:
        base = "bicubic" if kernel == "blur" else kernel
        rows = resize_matrix(x.shape[2], height, base).to(x)
        cols = resize_matrix(x.shape[3], width, base).to(x)
        out = torch.einsum("hH,bcHW,wW->bchw", rows, x, cols)
        if kernel == "blur":
            out = gaussian_blur(out, blur_sigma)
    return out[0] if squeeze else out
