"""The per-patch network of FunkNN's ``variant="lattice"``: a fully convolutional function.

Shapes: :meth:`LatticeNetwork.forward` maps patches (N, C, p, p) to (N, C) (before the
centre-sample residual, like ``FunkNN.patch_network``); :meth:`LatticeNetwork.trunk` maps a lattice
image (B, C, H, W) to features (B, F, H - (p - 1), W - (p - 1)) and :meth:`LatticeNetwork.head`
maps features (B, F, H', W') to (B, C, H', W'). Patch sample (i, j) of a query at input position
(px, py) (pixel units, pixel k centred at k, the ``grid_sample(align_corners=False)`` convention)
is the Keys-cubic resampling of the image at (px + j - (p-1)/2, py + i - (p-1)/2): the patch
spacing is fixed to one input pixel, not learned.

Why it can share computation (``funknn_fast.superres.grid_render``): queries whose positions
differ by whole input pixels read their patches from one common lattice image (the input
resampled at (phase_x + k, phase_y + l)), and the network below is a sliding-window function of
that lattice, so it runs once per lattice point as ordinary convolutions:

    x = INPUT_SCALE * (patch - centre)          # (N, C, 9, 9), the cnn variant's centring
    x = act(conv0(x))                           # 3x3 'valid', C -> F: 9 -> 7
    x = act(conv_k(x)) + x[:, :, 1:-1, 1:-1]    # k = 1, 2, 3: 3x3 'valid', F -> F: 7 -> 5 -> 3 -> 1
    x = act(head0(x)); x = act(head1(x))        # 1x1 layers F -> H -> H (the per-query head)
    return head2(x)[:, :, 0, 0]                 # H -> C

(p = 9: (p - 1) / 2 = 4 'valid' 3x3 convolutions, F = H = 64, ReLU.) The centring subtracts a
different constant (the query's centre sample) for every query, which would break sharing;
conv0's kernels are therefore constrained to sum to zero over their 3 x 3 window (stored weight
minus its window mean, :meth:`conv0_weight`), which makes conv0 blind to per-channel constants:
conv0(s (P - c)) = conv0(s P) exactly (in exact arithmetic), so the trunk needs no per-query
centre. Nothing is lost: the centred patch is itself blind to constants.

Multiply-adds (C = 3, F = H = 64): per query through this per-patch path 1.38 M (conv0 on 7 x 7
outputs 84.7 K, conv1 5 x 5 x 36.9 K = 921.6 K, conv2 3 x 3 x 36.9 K = 331.8 K, conv3 36.9 K,
head 8.4 K); shared on a lattice, :data:`TRUNK_MACS_PER_POINT` = 112,320 per lattice point plus
:data:`HEAD_MACS` = 8,384 per query (``variant="cnn"``: 4.8 M per query).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LATTICE_WIDTH = 64  # F: trunk channels
LATTICE_HEAD = (64, 64)  # H: widths of the hidden 1x1 head layers


def trunk_macs_per_point(channels: int, patch_size: int, width: int = LATTICE_WIDTH) -> int:
    """Multiply-adds of the trunk per lattice point (shared evaluation)."""
    layers = (patch_size - 1) // 2
    return 9 * channels * width + (layers - 1) * 9 * width * width


def head_macs(channels: int, width: int = LATTICE_WIDTH,
              hidden: tuple[int, ...] = LATTICE_HEAD) -> int:
    """Multiply-adds of the 1x1 head per query."""
    widths = (width, *hidden, channels)
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def per_query_macs(channels: int, patch_size: int, width: int = LATTICE_WIDTH) -> int:
    """Multiply-adds of the per-patch network for one query (trunk on shrinking windows + head)."""
    layers = (patch_size - 1) // 2
    total = 0
    for k in range(layers):
        side = patch_size - 2 * (k + 1)
        total += side * side * 9 * (channels if k == 0 else width) * width
    return total + head_macs(channels, width)


TRUNK_MACS_PER_POINT = trunk_macs_per_point(3, 9)
HEAD_MACS = head_macs(3)


class LatticeNetwork(nn.Module):
    """Per-patch network of the lattice variant (see module docstring).

    Args:
        channels: C, image channels.
        patch_size: p (odd, >= 3); the trunk has (p - 1) / 2 'valid' 3x3 convolutions.
        input_scale: the factor of the centred input (FunkNN's INPUT_SCALE).
    """

    def __init__(self, channels: int, patch_size: int, input_scale: float) -> None:
        super().__init__()
        if patch_size < 3 or patch_size % 2 != 1:
            raise ValueError(f"the lattice variant needs an odd patch_size >= 3, got {patch_size}")
        self.channels = channels
        self.patch_size = patch_size
        self.input_scale = float(input_scale)
        layers = (patch_size - 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if k == 0 else LATTICE_WIDTH, LATTICE_WIDTH, 3)
            for k in range(layers)
        )
        widths = (LATTICE_WIDTH, *LATTICE_HEAD, channels)
        self.heads = nn.ModuleList(
            nn.Conv2d(widths[k], widths[k + 1], 1) for k in range(len(widths) - 1)
        )

    def conv0_weight(self) -> torch.Tensor:
        """conv0's effective kernels: the stored ones minus their 3 x 3 window mean (sum zero)."""
        weight = self.convs[0].weight
        return weight - weight.mean(dim=(2, 3), keepdim=True)

    def trunk(self, lattice: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) lattice (times input_scale) -> (B, F, H - p + 1, W - p + 1) features."""
        x = torch.relu(F.conv2d(lattice, self.conv0_weight(), self.convs[0].bias))
        for conv in self.convs[1:]:
            x = torch.relu(conv(x)) + x[:, :, 1:-1, 1:-1]
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F, H, W) trunk features -> (B, C, H, W), the 1x1 layers."""
        x = features
        for k, layer in enumerate(self.heads):
            x = layer(x)
            if k < len(self.heads) - 1:
                x = torch.relu(x)
        return x

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) patches -> (N, C), before the centre-sample residual."""
        c = self.patch_size // 2
        x = self.input_scale * (patches - patches[:, :, c : c + 1, c : c + 1])
        return self.head(self.trunk(x))[:, :, 0, 0]
