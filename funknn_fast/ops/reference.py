"""Pure-PyTorch reference of ``patch_sample`` (backend ``"torch"``).

Shapes: image (B, C, H, W), coords (B, Q, 2) holding (x, y) in the ``grid_sample`` convention
with ``align_corners=False``, step (2,) = (step_x, step_y) in input pixels; the result is
(B, Q, C, p, p). Differentiable by autograd to any order in every input. It is the oracle of the
tests and the fallback of last resort, not the fast path: it materialises (B, Q, C, p, 4, p, 4)
tap values.
"""

from __future__ import annotations

import torch

from funknn_fast.ops.padding import PADDING_CODES

MAX_POSITION = 2.0**40


def keys_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic weights (a = -0.5) of the taps floor(u) - 1 .. floor(u) + 2; shape (..., 4)."""
    t2 = t * t
    t3 = t2 * t
    return 0.5 * torch.stack(
        (-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2), dim=-1
    )


def pad_indices(index: torch.Tensor, size: int, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps integer tap indices into [0, size); returns (index, valid)."""
    valid = (index >= 0) & (index < size)
    if padding == "border":
        return index.clamp(0, size - 1), torch.ones_like(valid)
    if padding == "reflection":
        period = 2 * size
        m = torch.remainder(index, period)
        return torch.where(m >= size, period - 1 - m, m), torch.ones_like(valid)
    return torch.where(valid, index, torch.zeros_like(index)), valid


def axis_taps(
    position: torch.Tensor, size: int, padding: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tap indices (..., 4), validity (..., 4) and weights (..., 4) of pixel positions (...)."""
    finite = torch.isfinite(position)
    limit = min(MAX_POSITION, torch.finfo(position.dtype).max)  # float16 stops at 65504
    clamped = position.clamp(-limit, limit)
    base = torch.where(finite, torch.floor(clamped.detach()), torch.zeros_like(clamped))
    t = torch.where(finite, clamped - base, torch.full_like(clamped, float("nan")))
    first = base.to(torch.int64) - 1
    index, valid = pad_indices(
        first.unsqueeze(-1) + torch.arange(4, device=position.device), size, padding
    )
    return index, valid, keys_weights(t)


def patch_offsets(patch_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Offsets (p,) of the patch samples from the centre, in units of the step."""
    return torch.arange(patch_size, dtype=dtype, device=device) - (patch_size - 1) / 2


def patch_sample_reference(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: str
) -> torch.Tensor:
    """Reference evaluation of the contract; inputs are assumed validated."""
    if padding not in PADDING_CODES:
        raise ValueError(f"padding must be one of {sorted(PADDING_CODES)}, got {padding!r}")
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    offsets = patch_offsets(patch_size, coords.dtype, coords.device)
    px = ((coords[..., 0] + 1) * width - 1) / 2
    py = ((coords[..., 1] + 1) * height - 1) / 2
    ux = px.unsqueeze(-1) + offsets * step[0]  # (B, Q, p) columns
    uy = py.unsqueeze(-1) + offsets * step[1]  # (B, Q, p) rows
    ix, vx, wx = axis_taps(ux, width, padding)  # (B, Q, p, 4)
    iy, vy, wy = axis_taps(uy, height, padding)
    # flat[b, q, i, l, j, k] = iy[b, q, i, l] * W + ix[b, q, j, k]
    flat = iy[:, :, :, :, None, None] * width + ix[:, :, None, None, :, :]
    valid = vy[:, :, :, :, None, None] & vx[:, :, None, None, :, :]
    taps = patch_size * 4 * patch_size * 4
    values = torch.gather(
        image.reshape(batch, channels, height * width),
        2,
        flat.reshape(batch, 1, queries * taps).expand(batch, channels, queries * taps),
    ).reshape(batch, channels, queries, patch_size, 4, patch_size, 4)
    values = values * valid[:, None].to(values.dtype)
    return torch.einsum("bqil,bqjk,bcqiljk->bqcij", wy, wx, values)
