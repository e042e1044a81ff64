"""Independent float64 evaluation of the ``patch_sample`` contract, written from its text.

Loops over samples in NumPy; evaluates the Keys kernel as the piecewise function of the tap
distance (not the per-tap polynomials the backends use) and applies the padding rules literally.
Slow on purpose: for small test cases only.
"""

from __future__ import annotations

import math

import numpy as np

KEYS_A = -0.5


def keys_kernel(distance: float) -> float:
    d = abs(distance)
    if d <= 1:
        return (KEYS_A + 2) * d**3 - (KEYS_A + 3) * d**2 + 1
    if d < 2:
        return KEYS_A * d**3 - 5 * KEYS_A * d**2 + 8 * KEYS_A * d - 4 * KEYS_A
    return 0.0


def padded_tap(index: int, size: int, padding: str) -> int | None:
    """Index inside [0, size) that tap ``index`` reads, or None for a zero tap."""
    if 0 <= index < size:
        return index
    if padding == "zeros":
        return None
    if padding == "border":
        return min(max(index, 0), size - 1)
    while not 0 <= index < size:  # half-sample reflection, one fold at a time
        index = -index - 1 if index < 0 else 2 * size - 1 - index
    return index


def interpolate(plane: np.ndarray, x: float, y: float, padding: str) -> float:
    """Keys cubic value of ``plane`` (H, W) at pixel position (x, y)."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return math.nan
    height, width = plane.shape
    fx, fy = math.floor(x), math.floor(y)
    total = 0.0
    for ty in range(fy - 1, fy + 3):
        row = padded_tap(ty, height, padding)
        for tx in range(fx - 1, fx + 3):
            col = padded_tap(tx, width, padding)
            if row is None or col is None:
                continue
            total += keys_kernel(y - ty) * keys_kernel(x - tx) * plane[row, col]
    return total


def patch_sample_oracle(
    image: np.ndarray, coords: np.ndarray, step: tuple[float, float], patch_size: int, padding: str
) -> np.ndarray:
    """(B, C, H, W), (B, Q, 2) -> (B, Q, C, p, p), straight from the contract."""
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    out = np.zeros((batch, queries, channels, patch_size, patch_size))
    half = (patch_size - 1) / 2
    for b in range(batch):
        for q in range(queries):
            px = ((coords[b, q, 0] + 1) * width - 1) / 2
            py = ((coords[b, q, 1] + 1) * height - 1) / 2
            for c in range(channels):
                for i in range(patch_size):
                    for j in range(patch_size):
                        out[b, q, c, i, j] = interpolate(
                            image[b, c],
                            px + (j - half) * step[0],
                            py + (i - half) * step[1],
                            padding,
                        )
    return out
