"""Side-by-side comparison figures (matplotlib, Agg backend), written atomically.

``comparison_figure(rows, path)``: ``rows`` is a list of (row label, [(title, image (C, H, W) in
[0, 1]), ...]); every image of a row is shown at the same size (low-resolution inputs are
enlarged with nearest-neighbour pixels, so the pixels stay visible).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from funknn_fast.atomic_files import write_atomically


def nearest_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, H, W) with nearest-neighbour pixels (for showing inputs)."""
    return F.interpolate(image.unsqueeze(0), size=size, mode="nearest")[0]


def comparison_figure(
    rows: Sequence[tuple[str, Sequence[tuple[str, torch.Tensor]]]],
    path: str | os.PathLike,
    panel_inches: float = 2.6,
) -> Path:
    """Writes a grid of images (one row per entry of ``rows``) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    columns = max(len(images) for _, images in rows)
    figure, axes = plt.subplots(len(rows), columns, squeeze=False,
                                figsize=(panel_inches * columns, panel_inches * len(rows) + 0.3))
    for r, (label, images) in enumerate(rows):
        height, width = max((im.shape[1], im.shape[2]) for _, im in images)
        for c in range(columns):
            axis = axes[r][c]
            axis.axis("off")
            if c >= len(images):
                continue
            title, image = images[c]
            if tuple(image.shape[1:]) != (height, width):
                image = nearest_resize(image, (height, width))
            array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            axis.imshow(array if array.shape[2] == 3 else array[:, :, 0], cmap="gray",
                        interpolation="nearest")
            axis.set_title(f"{label}: {title}" if c == 0 and label else title, fontsize=8)
    figure.tight_layout()
    try:
        write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(figure)
    return path
