"""Image quality metrics for reconstructions: SNR and shift-invariant SNR, per image, in dB.

Both take ``estimate`` and ``reference`` of the same shape ``(B, ...)`` (in that order, as
:mod:`funknn_fast.superres.metrics`) and return ``(B,)`` float64:

* ``snr(estimate, reference)`` = ``10 log10(||x||^2 / ||x - x_hat||^2)`` per image, ``x`` the
  reference, ``x_hat`` the estimate;
* ``shift_invariant_snr(estimate, reference)`` = ``snr`` of ``a x_hat + b``, ``(a, b)`` the
  least-squares fit to ``x``.
"""

from __future__ import annotations

import torch


def _flatten(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if reference.shape != estimate.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ"
        )
    if reference.dim() < 2:
        raise ValueError(f"expected a batch (B, ...), got shape {tuple(reference.shape)}")
    return estimate.reshape(estimate.shape[0], -1).double(), reference.reshape(
        reference.shape[0], -1
    ).double()


def snr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``10 log10(||x||^2 / ||x - x_hat||^2)`` per image (``x`` = ``reference``)."""
    y, x = _flatten(estimate, reference)
    return 10.0 * torch.log10(x.pow(2).sum(1) / (x - y).pow(2).sum(1))


def shift_invariant_snr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SNR after the least-squares fit ``a * x_hat + b`` of the estimate to the reference."""
    y, x = _flatten(estimate, reference)
    y_centered = y - y.mean(1, keepdim=True)
    x_centered = x - x.mean(1, keepdim=True)
    scale = (x_centered * y_centered).sum(1, keepdim=True) / y_centered.pow(2).sum(
        1, keepdim=True
    ).clamp_min(1e-300)
    fitted = scale * y_centered + x.mean(1, keepdim=True)
    return 10.0 * torch.log10(x.pow(2).sum(1) / (x - fitted).pow(2).sum(1))
