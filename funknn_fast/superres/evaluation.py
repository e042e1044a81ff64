"""Super-resolution evaluation: FunkNN against bicubic and bilinear upsampling.

Protocol (:func:`evaluate`): for every held-out photograph (``data.TEST_PHOTOS`` by default) the
ground truth is its centre crop of ``crop`` x ``crop`` pixels (``crop=None``: the whole image
cropped to a multiple of lcm(scales)); the input is its antialiased bilinear downscale
(``data.downscale``) by each integer ``scale``; each method renders the input back at the ground
truth's size and is clamped to [0, 1]:
  * bilinear / bicubic: ``F.interpolate(mode=..., align_corners=False)`` (PyTorch bicubic,
    a = -0.75);
  * funknn: ``inference.render`` at the ground truth's size (``render_recursive``, repeated x2,
    for the scales listed in ``recursive``).
Metrics (``funknn_fast.superres.metrics``): PSNR, SNR, shift-invariant SNR, per image, then
averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from funknn_fast.superres.data import TEST_PHOTOS, downscale, load_bundled_photo
from funknn_fast.superres.inference import DEFAULT_CHUNK, render, render_recursive
from funknn_fast.superres.metrics import psnr, shift_invariant_snr, snr

METHODS = ("bilinear", "bicubic", "funknn")


@dataclass
class Result:
    """Scores of one method on one image at one scale."""

    image: str
    scale: int
    method: str
    psnr: float
    snr: float
    si_snr: float


def ground_truth(image: torch.Tensor, crop: int | None, multiple: int) -> torch.Tensor:
    """Centre crop (C, crop, crop) or the whole image cut to a multiple of ``multiple``."""
    height, width = image.shape[1:]
    if crop is None:
        out_h, out_w = height - height % multiple, width - width % multiple
    else:
        if crop % multiple:
            raise ValueError(f"crop {crop} must be a multiple of {multiple}")
        out_h = out_w = crop
    if out_h < multiple or out_w < multiple or out_h > height or out_w > width:
        raise ValueError(f"image {height}x{width} too small for a {out_h}x{out_w} crop")
    top, left = (height - out_h) // 2, (width - out_w) // 2
    return image[:, top : top + out_h, left : left + out_w].contiguous()


def upsample(low: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """Bilinear or bicubic (PyTorch, align_corners=False) upsampling of (C, h, w), clamped."""
    out = F.interpolate(low.unsqueeze(0), size=size, mode=method, align_corners=False)
    return out[0].clamp(0, 1)


def super_resolve(model: nn.Module, low: torch.Tensor, size: tuple[int, int],
                  recursive: bool = False, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """FunkNN rendering of (C, h, w) at ``size``, clamped to [0, 1]."""
    renderer = render_recursive if recursive else render
    return renderer(model, low, size=size, chunk=chunk).clamp(0, 1)


def evaluate(
    model: nn.Module,
    images: dict[str, torch.Tensor] | None = None,
    scales: Sequence[int] = (2, 3, 4),
    recursive: Sequence[int] = (),
    crop: int | None = 240,
    chunk: int = DEFAULT_CHUNK,
    progress: bool = False,
) -> list[Result]:
    """Scores of every method, image and scale (see module docstring); ``progress``: a tqdm bar
    over the images."""
    from tqdm import tqdm

    if images is None:
        images = {name: load_bundled_photo(name) for name in TEST_PHOTOS}
    multiple = math.lcm(*[int(s) for s in scales])
    results = []
    for name, image in tqdm(images.items(), desc="eval", unit="image", disable=not progress,
                            leave=False):
        truth = ground_truth(image, crop, multiple)
        size = (truth.shape[1], truth.shape[2])
        for scale in scales:
            low = downscale(truth, (size[0] // scale, size[1] // scale))
            outputs = {m: upsample(low, size, m) for m in ("bilinear", "bicubic")}
            outputs["funknn"] = super_resolve(model, low, size, scale in recursive, chunk)
            for method, estimate in outputs.items():
                results.append(Result(name, int(scale), method, psnr(estimate, truth),
                                      snr(estimate, truth), shift_invariant_snr(estimate, truth)))
    return results


def mean_table(results: Sequence[Result]) -> dict[tuple[int, str], dict[str, float]]:
    """Mean metrics per (scale, method) over images."""
    table: dict[tuple[int, str], dict[str, float]] = {}
    keys = sorted({(r.scale, r.method) for r in results}, key=lambda k: (k[0], METHODS.index(k[1])))
    for key in keys:
        rows = [r for r in results if (r.scale, r.method) == key]
        table[key] = {m: sum(getattr(r, m) for r in rows) / len(rows)
                      for m in ("psnr", "snr", "si_snr")}
    return table


def markdown_table(results: Sequence[Result]) -> str:
    """Mean PSNR / SNR / SI-SNR per scale and method, with FunkNN's gain over bicubic."""
    table = mean_table(results)
    lines = ["| scale | method | PSNR (dB) | SNR (dB) | SI-SNR (dB) | PSNR - bicubic (dB) |",
             "|---|---|---|---|---|---|"]
    for (scale, method), values in table.items():
        gain = values["psnr"] - table[(scale, "bicubic")]["psnr"]
        lines.append(f"| x{scale} | {method} | {values['psnr']:.2f} | {values['snr']:.2f} | "
                     f"{values['si_snr']:.2f} | {gain:+.2f} |")
    return "\n".join(lines)
