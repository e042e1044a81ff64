"""SNR and shift-invariant SNR."""

import math

import pytest
import torch

from funknn_fast.prior.metrics import shift_invariant_snr, snr


def test_snr_matches_its_definition():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 5, 5, generator=generator, dtype=torch.float64) + 0.5
    noise = 0.1 * torch.randn(3, 1, 5, 5, generator=generator, dtype=torch.float64)
    expected = [10 * math.log10(float((x[i] ** 2).sum() / (noise[i] ** 2).sum())) for i in range(3)]
    torch.testing.assert_close(snr(x + noise, x), torch.tensor(expected, dtype=torch.float64))


def test_shift_invariant_snr_ignores_affine_changes_and_never_falls_below_snr():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, generator=generator, dtype=torch.float64)
    noisy = x + 0.05 * torch.randn(2, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(shift_invariant_snr(3.0 * noisy - 2.0, x),
                               shift_invariant_snr(noisy, x))
    assert (shift_invariant_snr(noisy, x) >= snr(noisy, x) - 1e-9).all()
    assert (shift_invariant_snr(x - 0.3, x) > 100).all()


def test_argument_order_is_estimate_then_reference():
    """Half the reference: 6.02 dB against the reference, 0 dB the other way round."""
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(snr(0.5 * x, x), torch.full((2,), 10 * math.log10(4.0),
                                                           dtype=torch.float64))
    generator = torch.Generator().manual_seed(3)
    noisy = x + 0.1 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    # the fit maps the estimate onto the reference: a different number when swapped
    assert (shift_invariant_snr(noisy, x) - shift_invariant_snr(x, noisy)).abs().min() > 1e-3


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ"):
        snr(torch.ones(2, 3), torch.ones(2, 4))
