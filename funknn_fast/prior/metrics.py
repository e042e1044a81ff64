"""Image quality metrics for reconstructions: SNR and shift-invariant SNR, per image, in dB.

Both take ``reference`` and ``estimate`` of the same shape ``(B, ...)`` and return ``(B,)``.
"""

from __future__ import annotations

import torch


def _flatten(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} differ"
        )
    if reference.dim() < 2:
        raise ValueError(f"expected a batch (B, ...), got shape {tuple(reference.shape)}")
    return reference.reshape(reference.shape[0], -1).double(), estimate.reshape(
        estimate.shape[0], -1
    ).double()


def snr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """``10 log10(||x||^2 / ||x - x_hat||^2)`` per image."""
    x, y = _flatten(reference, estimate)
    return 10.0 * torch.log10(x.pow(2).sum(1) / (x - y).pow(2).sum(1))


def shift_invariant_snr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """SNR after the least-squares fit ``a * x_hat + b`` of the estimate to the reference."""
    x, y = _flatten(reference, estimate)
    y_centered = y - y.mean(1, keepdim=True)
    x_centered = x - x.mean(1, keepdim=True)
    scale = (x_centered * y_centered).sum(1, keepdim=True) / y_centered.pow(2).sum(
        1, keepdim=True
    ).clamp_min(1e-300)
    fitted = scale * y_centered + x.mean(1, keepdim=True)
    return 10.0 * torch.log10(x.pow(2).sum(1) / (x - fitted).pow(2).sum(1))
