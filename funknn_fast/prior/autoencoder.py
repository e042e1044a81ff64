"""Convolutional auto-encoder for ``d x d`` images, the discrete generator ``G`` of the prior.

``Encoder(image (B, C, d, d)) -> latent (B, L)``, ``Decoder(latent (B, L)) -> image (B, C, d, d)``.
The encoder has one stage per entry of ``channels``: 3 x 3 conv + ReLU, a residual pair
(``x + conv(relu(conv(x)))``) and a 2 x 2 max-pool; a linear layer maps the last feature map
(``channels[-1] x (d / 2^S)^2``) to the latent. The decoder mirrors it with nearest-neighbour
upsampling and ends with a 3 x 3 conv to ``C`` channels (no output activation). ``d`` must be
divisible by ``2^S``.

Loss (:func:`reconstruction_loss`): MSE plus ``pyramid_weight`` times the Laplacian-pyramid L1
distance (:func:`laplacian_pyramid_l1`, a perceptual-style loss that needs no pretrained network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ResidualPair(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3 x 3 convs keeping the shape, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def _check_config(size: int, channels: Sequence[int], latent: int, image_channels: int) -> None:
    if len(channels) < 1 or any(int(c) < 1 for c in channels):
        raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
    if size < 2 ** len(channels) or size % (2 ** len(channels)) != 0:
        raise ValueError(
            f"size ({size}) must be a positive multiple of 2^len(channels) = {2 ** len(channels)}"
        )
    if latent < 1 or image_channels < 1:
        raise ValueError(f"latent and image_channels must be >= 1, got {latent}, {image_channels}")


class Encoder(nn.Module):
    def __init__(
        self, size: int, channels: Sequence[int], latent: int, image_channels: int = 1
    ) -> None:
        super().__init__()
        _check_config(size, channels, latent, image_channels)
        stages = []
        previous = image_channels
        for width in channels:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 3, padding=1),
                    nn.ReLU(),
                    ResidualPair(width),
                    nn.MaxPool2d(2),
                )
            )
            previous = width
        self.stages = nn.Sequential(*stages)
        side = size // 2 ** len(channels)
        self.to_latent = nn.Linear(previous * side * side, latent)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.stages(image).flatten(1))


class Decoder(nn.Module):
    def __init__(
        self, size: int, channels: Sequence[int], latent: int, image_channels: int = 1
    ) -> None:
        super().__init__()
        _check_config(size, channels, latent, image_channels)
        reverse = list(channels)[::-1]
        self.side = size // 2 ** len(channels)
        self.first = reverse[0]
        self.from_latent = nn.Linear(latent, reverse[0] * self.side * self.side)
        stages = []
        for k, width in enumerate(reverse):
            out = reverse[k + 1] if k + 1 < len(reverse) else reverse[-1]
            stages.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(width, out, 3, padding=1),
                    nn.ReLU(),
                    ResidualPair(out),
                )
            )
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(reverse[-1], image_channels, 3, padding=1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.from_latent(latent).reshape(-1, self.first, self.side, self.side)
        return self.to_image(self.stages(F.relu(x)))


class AutoEncoder(nn.Module):
    """Encoder + decoder; ``config()`` rebuilds it."""

    def __init__(
        self,
        size: int = 32,
        channels: Sequence[int] = (16, 32, 64, 128),
        latent: int = 64,
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        self.size, self.channels, self.latent = size, tuple(int(c) for c in channels), latent
        self.image_channels = image_channels
        self.encoder = Encoder(size, channels, latent, image_channels)
        self.decoder = Decoder(size, channels, latent, image_channels)

    def config(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "channels": list(self.channels),
            "latent": self.latent,
            "image_channels": self.image_channels,
        }

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1:] != (self.image_channels, self.size, self.size):
            raise ValueError(
                f"image must have shape (B, {self.image_channels}, {self.size}, {self.size}), "
                f"got {tuple(image.shape)}"
            )
        return self.decoder(self.encoder(image))


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(image: torch.Tensor) -> torch.Tensor:
    channels = image.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(image)
    kernel = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(image, (2, 2, 2, 2), mode="reflect"), kernel, groups=channels)


def laplacian_pyramid(image: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """Band-pass levels (finest first) and the final low-pass of ``image (B, C, H, W)``."""
    bands = []
    current = image
    for _ in range(levels):
        if min(current.shape[-2:]) < 6:
            break
        low = _blur(current)
        bands.append(current - low)
        current = F.avg_pool2d(low, 2)
    bands.append(current)
    return bands


def laplacian_pyramid_l1(
    estimate: torch.Tensor, target: torch.Tensor, levels: int = 4
) -> torch.Tensor:
    """``sum_j 2^j mean |L_j(estimate) - L_j(target)|`` over pyramid levels ``j`` (finest j = 0)."""
    total = estimate.new_zeros(())
    pairs = zip(laplacian_pyramid(estimate, levels), laplacian_pyramid(target, levels), strict=True)
    for level, (a, b) in enumerate(pairs):
        total = total + (2.0**level) * (a - b).abs().mean()
    return total


def reconstruction_loss(
    estimate: torch.Tensor, target: torch.Tensor, pyramid_weight: float = 1.0
) -> torch.Tensor:
    """MSE + ``pyramid_weight`` * Laplacian-pyramid L1."""
    return F.mse_loss(estimate, target) + pyramid_weight * laplacian_pyramid_l1(estimate, target)
