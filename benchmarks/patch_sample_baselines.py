"""Baselines for ``patch_sample`` benchmarks: what a user would write without funknn_fast.

Both take image (B, C, H, W), coords (B, Q, 2) in the grid_sample convention (align_corners=False)
and step (2,) in input pixels, and return (B, Q, C, p, p) like ``patch_sample``:

* ``grid_sample_patches``: an explicit patch grid fed to ``F.grid_sample(mode="bicubic",
  padding_mode="reflection")`` (PyTorch's cubic has a = -0.75, so values differ slightly from the
  Keys a = -0.5 of funknn_fast; it is a speed baseline);
* ``gather_patches``: the paper's 16-tap approach as pure tensor code: 16 gathered taps per sample
  with Keys weights (a = -0.5) and half-sample reflection, differentiable by autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _offsets(patch_size: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(patch_size, dtype=like.dtype, device=like.device) - (patch_size - 1) / 2


def grid_sample_patches(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int
) -> torch.Tensor:
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    offsets = _offsets(patch_size, coords)
    dx = offsets * step[0] * (2.0 / width)  # columns j
    dy = offsets * step[1] * (2.0 / height)  # rows i
    gx = coords[..., 0, None, None] + dx[None, None, None, :]  # (B, Q, 1, p)
    gy = coords[..., 1, None, None] + dy[None, None, :, None]  # (B, Q, p, 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # (B, Q, p, p, 2)
    grid = grid.reshape(batch, queries, patch_size * patch_size, 2)
    out = F.grid_sample(image, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.reshape(batch, channels, queries, patch_size, patch_size).permute(0, 2, 1, 3, 4)


def _keys(t: torch.Tensor) -> torch.Tensor:
    t2, t3 = t * t, t * t * t
    return 0.5 * torch.stack(
        (-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2), dim=-1
    )


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    m = torch.remainder(index, 2 * size)
    return torch.where(m >= size, 2 * size - 1 - m, m)


def gather_patches(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int
) -> torch.Tensor:
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    offsets = _offsets(patch_size, coords)
    px = ((coords[..., 0] + 1) * width - 1) / 2
    py = ((coords[..., 1] + 1) * height - 1) / 2
    ux = (px[..., None, None] + offsets[None, None, None, :] * step[0]).expand(
        -1, -1, patch_size, -1
    )
    uy = (py[..., None, None] + offsets[None, None, :, None] * step[1]).expand(
        -1, -1, -1, patch_size
    )
    fx, fy = torch.floor(ux.detach()), torch.floor(uy.detach())
    wx, wy = _keys(ux - fx), _keys(uy - fy)  # (B, Q, p, p, 4)
    taps = torch.arange(-1, 3, device=image.device)
    ix = _reflect(fx.long()[..., None] + taps, width)  # (B, Q, p, p, 4)
    iy = _reflect(fy.long()[..., None] + taps, height)
    flat = (iy[..., :, None] * width + ix[..., None, :]).reshape(batch, 1, -1)  # 16 taps
    values = torch.gather(
        image.reshape(batch, channels, height * width), 2, flat.expand(-1, channels, -1)
    ).reshape(batch, channels, queries, patch_size, patch_size, 4, 4)
    weights = wy[..., :, None] * wx[..., None, :]  # (B, Q, p, p, 4, 4)
    out = (values * weights[:, None]).sum(dim=(-1, -2))
    return out.permute(0, 2, 1, 3, 4)
