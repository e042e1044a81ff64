"""SNR and shift-invariant SNR."""

import math

import pytest
import torch

from funknn_fast.prior.metrics import shift_invariant_snr, snr


@pytest.fixture(autouse=True)
def _single_thread():
    """One intra-op thread: the shared test machine is oversubscribed (8-20x slower with 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_snr_matches_its_definition():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 5, 5, generator=generator, dtype=torch.float64) + 0.5
    noise = 0.1 * torch.randn(3, 1, 5, 5, generator=generator, dtype=torch.float64)
    expected = [10 * math.log10(float((x[i] ** 2).sum() / (noise[i] ** 2).sum())) for i in range(3)]
    torch.testing.assert_close(snr(x, x + noise), torch.tensor(expected, dtype=torch.float64))


def test_shift_invariant_snr_ignores_affine_changes_and_never_falls_below_snr():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, generator=generator, dtype=torch.float64)
    noisy = x + 0.05 * torch.randn(2, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(shift_invariant_snr(x, 3.0 * noisy - 2.0),
                               shift_invariant_snr(x, noisy))
    assert (shift_invariant_snr(x, noisy) >= snr(x, noisy) - 1e-9).all()
    assert (shift_invariant_snr(x, x - 0.3) > 100).all()


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ"):
        snr(torch.ones(2, 3), torch.ones(2, 4))
