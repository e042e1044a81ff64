"""Rendering a FunkNN continuous image at any scale or size, in bounded memory.

:func:`render` takes a low-resolution image (C, h, w) or a batch (B, C, h, w) (rendered one image
at a time) and returns the image (same rank) rendered at ``size`` = (H, W) (any positive size,
non-square, above or below the input's) or at ``scale`` (H = round(h * scale),
W = round(w * scale)). Output pixel (i, j) is the model queried at its centre,
x = (2 j + 1) / W - 1, y = (2 i + 1) / H - 1 (``grid_sample`` convention, align_corners=False).
Queries are generated and evaluated ``chunk`` at a time under ``torch.inference_mode``, so the
memory beyond input and output is O(chunk) (about 0.1 MB per query in flight for the CNN:
~100 MB at the default 1024).

For FunkNN's ``variant="lattice"``, :func:`render` evaluates the grid with shared computation
(``funknn_fast.superres.grid_render``: the same values to float rounding, ~0.12-0.15 M instead of
1.38 M multiply-adds per pixel) whenever its plan says sharing is cheaper for the scale, and per
query otherwise or with ``shared=False``.

:func:`render_liif` is the same for the LIIF baseline (one encoding, then chunks of queries).

:func:`render_recursive` is the recursive mode of "factor"-trained models: the image is doubled
by the model until it reaches at least the target size, then rendered at the target size.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from funknn_fast.models.liif import cell_for_size

DEFAULT_CHUNK = 1024


def output_size(height: int, width: int, scale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(H, W) from exactly one of ``scale`` (> 0) or ``size`` (positive ints)."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    if size is not None:
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
            or min(size) < 1
        ):
            raise ValueError(f"size must be a pair of positive ints (H, W), got {size!r}")
        return int(size[0]), int(size[1])
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale}")
    out = (round(height * scale), round(width * scale))
    if min(out) < 1:
        raise ValueError(f"scale {scale} makes a {height}x{width} image smaller than 1 pixel")
    return out


def _chunk_coords(start: int, stop: int, height: int, width: int,
                  dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    index = torch.arange(start, stop, device=device)
    x = (2 * (index % width) + 1).to(torch.float64) / width - 1
    y = (2 * torch.div(index, width, rounding_mode="floor") + 1).to(torch.float64) / height - 1
    return torch.stack((x, y), dim=1).to(dtype).unsqueeze(0)


def _check_same_dtype_and_device(model: nn.Module, image: torch.Tensor) -> None:
    parameter = next(model.parameters(), None)
    if parameter is not None and (parameter.dtype, parameter.device) != (image.dtype,
                                                                          image.device):
        raise ValueError(
            f"image is {image.dtype} on {image.device} but the model is {parameter.dtype} on "
            f"{parameter.device}: convert one of them (e.g. model.to(image.dtype))")


def render(
    model: nn.Module,
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
    shared: bool | None = None,
) -> torch.Tensor:
    """Renders ``image`` ((C, h, w) or (B, C, h, w)) at ``scale`` or ``size`` = (H, W).

    ``shared``: for the lattice variant, use ``grid_render`` when its plan is cheaper; None
    (default) = the model's ``shared_render`` attribute if it has one (set by ``funknn superres
    --no-shared``), else True.
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4) or image.shape[0] == 0:
        raise ValueError("image must be a tensor (C, h, w) or (B, C, h, w) with B >= 1")
    batched = image.dim() == 4
    if batched and image.shape[0] != 1:  # a batch: one image at a time
        return torch.cat([render(model, one, scale, size, chunk, progress, shared)
                          for one in image.split(1)])
    low = image if batched else image.unsqueeze(0)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    _check_same_dtype_and_device(model, low)
    height, width = output_size(low.shape[2], low.shape[3], scale, size)
    if shared is None:
        shared = getattr(model, "shared_render", True)
    if shared and getattr(model, "variant", None) == "lattice":
        from funknn_fast.superres.grid_render import render_grid, share_plan

        if share_plan(model, tuple(low.shape[2:]), (height, width)).shared:
            was_training = model.training
            model.eval()
            try:
                with torch.inference_mode():
                    out = render_grid(model, low, (height, width), progress=progress)
            finally:
                model.train(was_training)
            return out if batched else out[0]
    channels = low.shape[1]
    total = height * width
    out = torch.empty(channels, total, dtype=low.dtype, device=low.device)
    starts = range(0, total, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"render {height}x{width}", unit="chunk", leave=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in starts:
                stop = min(start + chunk, total)
                coords = _chunk_coords(start, stop, height, width, low.dtype, low.device)
                out[:, start:stop] = model(coords, low)[0].t()
    finally:
        model.train(was_training)
    out = out.view(1, channels, height, width)
    return out if batched else out[0]


def render_recursive(
    model: nn.Module,
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
) -> torch.Tensor:
    """Doubles ``image`` with the model until it reaches the target, then renders the target."""
    squeeze = image.dim() == 3
    low = image.unsqueeze(0) if squeeze else image
    height, width = output_size(low.shape[2], low.shape[3], scale, size)
    current = low
    while current.shape[2] * 2 <= height and current.shape[3] * 2 <= width:
        current = render(model, current, scale=2.0, chunk=chunk, progress=progress)
    if tuple(current.shape[2:]) != (height, width):
        current = render(model, current, size=(height, width), chunk=chunk, progress=progress)
    return current[0] if squeeze else current


def render_liif(
    model: nn.Module,
    image: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    chunk: int = 16384,
    project: bool = True,
) -> torch.Tensor:
    """Renders ``image`` ((C, h, w) or (1, C, h, w)) at ``scale`` or ``size`` = (H, W).

    Output pixel (i, j) is LIIF queried at its centre with the cell (2 / W, 2 / H), ``chunk``
    queries at a time from one encoding of the image (same contract as
    ``funknn_fast.superres.inference.render``).
    """
    if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
        raise ValueError("image must be a tensor (C, h, w) or (1, C, h, w)")
    if image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"render_liif takes one image, got a batch of {image.shape[0]}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    low = image if image.dim() == 4 else image.unsqueeze(0)
    height, width = output_size(low.shape[2], low.shape[3], scale, size)
    cell = cell_for_size(height, width, dtype=low.dtype, device=low.device)
    out = low.new_empty(height * width, low.shape[1])
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            features = model.encode(low, project=project)
            for start in range(0, height * width, chunk):
                index = torch.arange(start, min(start + chunk, height * width), device=low.device)
                x = (2 * (index % width) + 1).double() / width - 1
                y = (2 * torch.div(index, width, rounding_mode="floor") + 1).double() / height - 1
                coords = torch.stack((x, y), dim=1).to(low.dtype)[None]
                out[start : start + chunk] = model.query(features, coords, cell)[0]
    finally:
        model.train(was_training)
    out = out.t().reshape(1, low.shape[1], height, width)
    return out if image.dim() == 4 else out[0]
