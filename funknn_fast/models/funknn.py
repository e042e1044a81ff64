"""The FunkNN model: a continuous image from a low-resolution one, queried at any coordinate.

``FunkNN(coords (B, Q, 2), image (B, C, h, w)) -> (B, Q, C)``.

Coordinates follow ``F.grid_sample`` with ``align_corners=False`` (the convention of
:func:`funknn_fast.patch_sample`): x, y in [-1, 1] span the image's outer pixel edges, pixel k of
a width-w row is centred at x = (2k + 1) / w - 1. To render an H x W image, query the centres of
its pixels (``funknn_fast.superres.inference.pixel_centres``): no half-pixel offset.

For every query, a p x p patch (p = 9) is resampled from ``image`` around the query by Keys cubic
interpolation (``patch_sample``, reflection padding) with a learnable spacing ``step`` =
(step_x, step_y) in input pixels, initialised to one input pixel. The patch goes through the
per-patch network :meth:`FunkNN.patch_network` ((N, C, p, p) -> (N, C)), and the centre sample of
the patch (the plain Keys-cubic interpolation at the query) is added to its output.

Per-patch network, ``variant="cnn"`` (the paper's; 140,933 trainable parameters for C = 3, the
two spacings included), layer by layer, ``act`` = ReLU (or ``Sine`` for ``activation="sin"``)::

    x = INPUT_SCALE * (patches - patches[:, :, 4:5, 4:5])  # (N, C, 9, 9), INPUT_SCALE = 10
    for k in range(8):                                   # convs[k]: 2x2 kernel, padding="same"
        y = conv_activations[k](convs[k](x))             # (PyTorch pads 1 row/col at bottom/right)
        x = y + x if k in RESIDUAL_CONVS else y          # RESIDUAL_CONVS = (1, 2, 4, 5, 6)
        if k in POOL_AFTER_CONVS:                        # POOL_AFTER_CONVS = (3, 7)
            x = pool(x)                                  # MaxPool2d(2): 9 -> 4, then 4 -> 2
    x = x.flatten(1)                                     # (N, 256), NCHW order (c, i, j)
    for k in range(4):                                   # linears: 256 -> 64 -> 64 -> 64 -> C
        x = linears[k](x)
        if k < 3:
            x = linear_activations[k](x)
    return x                                             # (N, C)

The input centring and scaling (each patch minus its centre sample, per channel, times
``INPUT_SCALE`` = 10) is the one deviation from the paper's code: the patch's mean level dominates
raw intensities and makes plain Adam training stall at "output zero" (measured: raw patches learn
nothing in 300 steps, centred ones gain ~0.9 dB over Keys cubic); local differences are ~0.01-0.1,
the factor 10 brings them to order 1 (a CNN pilot learned ~2x faster with it).

``variant="mlp"`` (the public code's default; 650,885 parameters for C = 3):
``x = (INPUT_SCALE * (patches - centre)).flatten(1)`` (C p^2 = 243), then ``linears``
C p^2 -> 512 -> 512 -> 256 -> 256 -> 128 -> 128 -> 64 -> 64 -> 64 -> C with
``linear_activations`` between.

``variant="lattice"`` (``funknn_fast.models.lattice``; ReLU only): the patch spacing is fixed to
one input pixel (``step`` is a frozen parameter equal to 1) and the per-patch network is 'valid' 3x3
convolutions 9 -> 7 -> 5 -> 3 -> 1 then 1x1 layers, a sliding-window function of the resampled
lattice, so that ``funknn_fast.superres.grid_render`` renders pixel grids with computation shared
between queries (1.38 M multiply-adds per query here, ~0.12 M per output pixel shared).

``activation="sin"`` replaces every ReLU by :class:`Sine` (sin(w0 x), one learnable w0 per layer,
initialised to 30) and initialises the layer feeding each Sine SIREN-style.

``FunkNN.forward`` runs the CNN through the fused channels-last GEMM path of
``funknn_fast.models.fused_cnn`` (the same function, faster; used for training too);
``fused=False`` runs the explicit module path above.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from funknn_fast.models.fused_cnn import fused_cnn_patch_network
from funknn_fast.models.lattice import LatticeNetwork
from funknn_fast.ops.patch_sample import patch_sample

VARIANTS = ("cnn", "mlp", "lattice")
ACTIVATIONS = ("relu", "sin")
CNN_CHANNELS = 64
CNN_HIDDEN = (64, 64, 64)
MLP_HIDDEN = (512, 512, 256, 256, 128, 128, 64, 64, 64)
INPUT_SCALE = 10.0  # patches enter the network as INPUT_SCALE * (patch - centre sample)


class Sine(nn.Module):
    """Elementwise sin(w0 x) with a learnable scalar frequency w0 (SIREN)."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = nn.Parameter(torch.tensor(float(w0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def _make_activation(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else Sine(30.0)


def _siren_init(layer: nn.Conv2d | nn.Linear, first: bool, w0: float = 30.0) -> None:
    fan_in = layer.weight[0].numel()
    bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / w0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)


class FunkNN(nn.Module):
    """FunkNN: ``model(coords (B, Q, 2), image (B, C, h, w)) -> (B, Q, C)`` (see module docstring).

    Args:
        channels: C, image channels.
        variant: "cnn" (paper), "mlp" (public code default) or "lattice" (grid rendering with
            shared computation, fixed unit spacing; see module docstring).
        activation: "relu" or "sin".
        patch_size: p, the patch is p x p (odd; the CNN needs p >= 4).
        padding: border handling of the patch sampling ("reflection", "border", "zeros").
        backend: ``patch_sample`` backend ("auto" = C++ kernels on CPU).
        fused: run the CNN through ``funknn_fast.models.fused_cnn`` in ``forward``.
    """

    INPUT_SCALE = INPUT_SCALE
    RESIDUAL_CONVS = (1, 2, 4, 5, 6)
    POOL_AFTER_CONVS = (3, 7)

    def __init__(
        self,
        channels: int = 3,
        variant: str = "cnn",
        activation: str = "relu",
        patch_size: int = 9,
        padding: str = "reflection",
        backend: str = "auto",
        fused: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size % 2 != 1:
            raise ValueError(f"patch_size must be an odd int, got {patch_size!r}")
        if variant == "cnn" and patch_size < 5:
            raise ValueError(f"the cnn variant needs patch_size >= 5, got {patch_size}")
        if variant == "lattice" and activation != "relu":
            raise ValueError(f"the lattice variant supports activation='relu', got {activation!r}")
        self.channels = channels
        self.variant = variant
        self.activation = activation
        self.patch_size = patch_size
        self.padding = padding
        self.backend = backend
        self.fused = fused
        # (step_x, step_y): patch spacing in input pixels.
        self.step = nn.Parameter(torch.ones(2))
        if variant == "lattice":
            self.step.requires_grad_(False)  # fixed unit spacing: the lattice of grid_render
            self.lattice = LatticeNetwork(channels, patch_size, INPUT_SCALE)
            return

        if variant == "cnn":
            self.convs = nn.ModuleList(
                nn.Conv2d(channels if k == 0 else CNN_CHANNELS, CNN_CHANNELS, 2, padding="same")
                for k in range(8)
            )
            self.conv_activations = nn.ModuleList(_make_activation(activation) for _ in range(8))
            self.pool = nn.MaxPool2d(2)
            side = patch_size // 2 // 2
            widths = (CNN_CHANNELS * side * side, *CNN_HIDDEN, channels)
        else:
            widths = (channels * patch_size * patch_size, *MLP_HIDDEN, channels)
        self.linears = nn.ModuleList(
            nn.Linear(widths[k], widths[k + 1]) for k in range(len(widths) - 1)
        )
        self.linear_activations = nn.ModuleList(
            _make_activation(activation) for _ in range(len(widths) - 2)
        )
        if activation == "sin":
            layers = list(self.convs) if variant == "cnn" else []
            layers += list(self.linears)
            for k, layer in enumerate(layers):
                _siren_init(layer, first=k == 0)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable), enough to rebuild the model."""
        return {
            "channels": self.channels,
            "variant": self.variant,
            "activation": self.activation,
            "patch_size": self.patch_size,
            "padding": self.padding,
        }

    def patch_network(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) patches -> (N, C), before the centre-sample residual (module path)."""
        if self.variant == "lattice":
            return self.lattice(patches)
        c = self.patch_size // 2
        x = INPUT_SCALE * (patches - patches[:, :, c : c + 1, c : c + 1])
        if self.variant == "cnn":
            for k, (conv, act) in enumerate(zip(self.convs, self.conv_activations, strict=True)):
                y = act(conv(x))
                x = y + x if k in self.RESIDUAL_CONVS else y
                if k in self.POOL_AFTER_CONVS:
                    x = self.pool(x)
            x = x.flatten(1)
        else:
            x = x.flatten(1)
        for k, linear in enumerate(self.linears):
            x = linear(x)
            if k < len(self.linear_activations):
                x = self.linear_activations[k](x)
        return x

    def network(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) patches -> (N, C) through the fastest path (fused CNN when enabled)."""
        if self.variant == "cnn" and self.fused:
            return fused_cnn_patch_network(self, patches)
        return self.patch_network(patches)

    def sample_patches(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, Q, 2) coords, (B, C, h, w) image -> (B, Q, C, p, p) patches around the queries."""
        if image.dim() != 4 or image.shape[1] != self.channels:
            raise ValueError(
                f"image must have shape (B, {self.channels}, h, w), got {tuple(image.shape)}"
            )
        return patch_sample(
            image, coords, self.step.to(coords.dtype), self.patch_size, self.padding, self.backend
        )

    def forward(self, coords: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Intensities (B, Q, C) of the continuous image at ``coords`` (B, Q, 2)."""
        patches = self.sample_patches(coords, image)
        batch, queries, channels, p, _ = patches.shape
        flat = patches.reshape(batch * queries, channels, p, p)
        centre = flat[:, :, p // 2, p // 2]
        return (self.network(flat) + centre).reshape(batch, queries, channels)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
