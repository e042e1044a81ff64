"""The pure-PyTorch reference with float16 and bfloat16 positions (the clamp of far positions
must fit the dtype: float16 stops at 65504)."""

import pytest
import torch

from funknn_fast.ops.reference import patch_sample_reference


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_positions_match_float64(dtype):
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 10, 12, generator=generator, dtype=torch.float64)
    coords = torch.rand(1, 20, 2, generator=generator, dtype=torch.float64) * 2.2 - 1.1
    step = torch.tensor([0.9, 1.1], dtype=torch.float64)
    exact = patch_sample_reference(image, coords, step, 9, "reflection")
    low = patch_sample_reference(image.to(dtype), coords.to(dtype), step.to(dtype), 9,
                                 "reflection")
    assert low.dtype == dtype
    # positions are computed in the low precision too: an error of a few ulps of the pixel
    # position (up to ~12 here) times the image's slope, plus the rounding of the values
    assert (low.double() - exact).abs().max() <= 16 * torch.finfo(dtype).eps
