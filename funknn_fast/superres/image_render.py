"""Rendering a real image file (grey or colour, with or without alpha) at any size with FunkNN.

:func:`render_image` takes an ``image_io.ImageFile`` (pixels (C, H, W) with C = 1 or 3, optional
alpha (1, H, W)) and returns one at ``size`` = (H', W'), with these rules:

* channels: a 3-channel model renders a grey image as three equal channels and averages them
  back to one (grey stays grey); a 1-channel model renders each colour channel on its own;
* alpha is carried: the colour is rendered premultiplied by alpha (so hidden colours under
  transparent pixels do not bleed into visible ones), alpha is rendered like a grey image, and
  the output colour is the rendered premultiplied colour divided by the rendered alpha (0 where
  alpha < 1/512);
* downscaling is antialiased: along an axis where the output is smaller than the input, the
  input is first resized with the antialiased bilinear filter (``data.downscale``, the training
  degradation); when the output is no larger than the input on both axes, that resize is the
  result and the model is not run (FunkNN is trained to add detail, not to remove it);
* the model runs on its own device and dtype; the result is float32 on the CPU, clamped to
  [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from funknn_fast.superres.data import downscale
from funknn_fast.superres.image_io import ImageFile
from funknn_fast.superres.inference import DEFAULT_CHUNK, render, render_recursive

ALPHA_FLOOR = 1.0 / 512


def _render_layers(model: nn.Module, layers: torch.Tensor, size: tuple[int, int],
                   recursive: bool, chunk: int, progress: bool) -> torch.Tensor:
    """(C, h, w) -> (C, H, W) with the channel rule of the module docstring."""
    renderer = render_recursive if recursive else render
    parameter = next(model.parameters())
    layers = layers.to(device=parameter.device, dtype=parameter.dtype)
    channels = layers.shape[0]
    if model.channels == channels:
        out = renderer(model, layers, size=size, chunk=chunk, progress=progress)
    elif model.channels == 3 and channels == 1:
        out = renderer(model, layers.expand(3, -1, -1).contiguous(), size=size, chunk=chunk,
                       progress=progress).mean(dim=0, keepdim=True)
    elif model.channels == 1:
        out = torch.cat([renderer(model, layer[None], size=size, chunk=chunk, progress=progress)
                         for layer in layers])
    else:
        raise ValueError(f"a {model.channels}-channel model cannot render {channels} channels")
    return out.float().cpu()


def render_image(
    model: nn.Module,
    image: ImageFile,
    size: tuple[int, int],
    recursive: bool = False,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
) -> ImageFile:
    """``image`` rendered at ``size`` = (H, W) (rules in the module docstring)."""
    pixels, alpha = image.pixels.float(), image.alpha
    if alpha is not None:
        pixels = pixels * alpha
    height, width = pixels.shape[1:]
    shrunk = (min(height, size[0]), min(width, size[1]))
    if shrunk != (height, width):
        pixels = downscale(pixels, shrunk)
        alpha = None if alpha is None else downscale(alpha.float(), shrunk)
    if shrunk != tuple(size):
        pixels = _render_layers(model, pixels, size, recursive, chunk, progress)
        if alpha is not None:
            alpha = _render_layers(model, alpha, size, recursive, chunk, progress)
    if alpha is not None:
        alpha = alpha.clamp(0, 1)
        visible = alpha >= ALPHA_FLOOR
        pixels = torch.where(visible, pixels / alpha.clamp_min(ALPHA_FLOOR), 0.0)
    return ImageFile(pixels.clamp(0, 1), alpha, image.bits)
