"""Image quality metrics (dB), on tensors of any matching shape, computed in float64.

* ``psnr(estimate, reference, data_range=1)`` = 10 log10(data_range^2 / mean((x_hat - x)^2));
* ``snr(estimate, reference)`` = 10 log10(||x||^2 / ||x - x_hat||^2) (the paper's metric);
* ``shift_invariant_snr`` = ``snr`` of a x_hat + b, with (a, b) the least-squares fit to x
  (for results whose intensity scale and offset are not identifiable).

A perfect estimate gives +inf.
"""

from __future__ import annotations

import math

import torch


def _pair(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(estimate, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("estimate and reference must be torch tensors")
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate shape {tuple(estimate.shape)} != reference shape {tuple(reference.shape)}"
        )
    if estimate.numel() == 0:
        raise ValueError("estimate and reference must not be empty")
    return estimate.detach().double().flatten(), reference.detach().double().flatten()


def _ratio_db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def psnr(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    x_hat, x = _pair(estimate, reference)
    return _ratio_db(data_range**2, float(((x_hat - x) ** 2).mean()))


def snr(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Signal-to-noise ratio 10 log10(||x||^2 / ||x - x_hat||^2) in dB."""
    x_hat, x = _pair(estimate, reference)
    return _ratio_db(float((x**2).sum()), float(((x - x_hat) ** 2).sum()))


def shift_invariant_snr(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """SNR of a x_hat + b, (a, b) = argmin ||a x_hat + b - x||^2."""
    x_hat, x = _pair(estimate, reference)
    centred = x_hat - x_hat.mean()
    variance = float((centred**2).sum())
    a = float((centred * (x - x.mean())).sum()) / variance if variance > 0 else 0.0
    fitted = a * centred + x.mean()
    return _ratio_db(float((x**2).sum()), float(((x - fitted) ** 2).sum()))
