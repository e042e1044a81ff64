"""Metrics: PSNR, SNR, shift-invariant SNR against closed forms."""

import math

import pytest
import torch

from funknn_fast.superres.metrics import psnr, shift_invariant_snr, snr


def test_psnr_and_snr_closed_form():
    torch.manual_seed(0)
    reference = torch.rand(3, 8, 9)
    noise = torch.randn(3, 8, 9) * 0.05
    estimate = reference + noise
    mse = float((noise.double() ** 2).mean())
    assert psnr(estimate, reference) == pytest.approx(10 * math.log10(1 / mse))
    assert psnr(estimate, reference, data_range=255) == pytest.approx(
        10 * math.log10(255**2 / mse))
    ratio = float((reference.double() ** 2).sum() / (noise.double() ** 2).sum())
    assert snr(estimate, reference) == pytest.approx(10 * math.log10(ratio))
    assert psnr(reference, reference) == math.inf


def test_shift_invariant_snr_ignores_gain_and_offset():
    torch.manual_seed(1)
    reference = torch.rand(2, 10, 10, dtype=torch.float64)
    noisy = reference + 0.01 * torch.randn_like(reference)
    base = shift_invariant_snr(noisy, reference)
    assert shift_invariant_snr(3.0 * noisy - 0.7, reference) == pytest.approx(base, rel=1e-9)
    assert snr(3.0 * noisy - 0.7, reference) < base - 5
    assert base >= snr(noisy, reference) - 1e-9


def test_metric_errors():
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="data_range"):
        psnr(torch.zeros(2), torch.ones(2), data_range=0)
    with pytest.raises(TypeError):
        snr([1.0], torch.ones(1))
