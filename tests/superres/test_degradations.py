"""Downscaling kernels (Pillow's resamplers reproduced), the training mix and the photo split."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from funknn_fast.superres.data import TEST_PHOTOS, TRAIN_PHOTOS, CropSampler, downscale
from funknn_fast.superres.degradations import KERNELS, degrade, gaussian_blur
from funknn_fast.superres.photos import HELDOUT_PHOTOS, MATE_PHOTOS, TRAIN_MATE_PHOTOS
from funknn_fast.superres.training import TrainConfig

PIL_FILTERS = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "area": Image.BOX,
               "antialiased": Image.BILINEAR}


def pil_resize(image, size, kernel):
    channels = [Image.fromarray(c.numpy().astype(np.float32), mode="F")
                .resize((size[1], size[0]), PIL_FILTERS[kernel]) for c in image]
    return torch.from_numpy(np.stack([np.asarray(c) for c in channels])).double()


@pytest.mark.parametrize("kernel", sorted(PIL_FILTERS))
@pytest.mark.parametrize("size", [(11, 17), (20, 26), (60, 70)])  # down x3.4, x2, up
def test_kernels_equal_pillow(kernel, size):
    image = torch.rand(2, 37, 53, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # Pillow's "F" resampling runs in float32: measured agreement <= 1.2e-7
    error = degrade(image, size, kernel) - pil_resize(image, size, kernel)
    assert float(error.abs().max()) < 5e-7


def test_antialiased_is_the_papers_downscale_and_bilinear_is_plain():
    image = torch.rand(1, 3, 40, 30)
    assert torch.allclose(degrade(image, (13, 11), "antialiased"), downscale(image, (13, 11)),
                          atol=1e-6)
    plain = F.interpolate(image, size=(13, 11), mode="bilinear", align_corners=False)
    assert torch.equal(degrade(image, (13, 11), "bilinear"), plain)


def test_blur_keeps_constants_and_smooths():
    constant = torch.full((1, 3, 12, 10), 0.3, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(constant, 0.7), constant, atol=1e-15)
    image = torch.rand(1, 3, 30, 30, dtype=torch.float64)
    blurred, sharp = degrade(image, (15, 15), "blur", 0.6), degrade(image, (15, 15), "bicubic")
    assert blurred.shape == sharp.shape and blurred.std() < sharp.std()


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        degrade(torch.rand(3, 8, 8), (4, 4), "nearest")
    with pytest.raises(ValueError, match="kernels"):
        CropSampler([torch.rand(3, 16, 16)], 8, kernels=("nearest",))
    with pytest.raises(ValueError, match="kernels"):
        TrainConfig(kernels="bicubic,nearest")
    assert TrainConfig(kernels="mix").kernel_names() == KERNELS


def test_sampler_draws_every_kernel_reproducibly():
    images = [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(3))]
    sampler = CropSampler(images, 16, queries=4, kernels=KERNELS)
    lows = [sampler.sample(torch.Generator().manual_seed(k)).low for k in range(6)]
    again = [sampler.sample(torch.Generator().manual_seed(k)).low for k in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(lows, again))
    assert all(0 <= float(x.min()) and float(x.max()) <= 1 for x in lows)
    default = CropSampler(images, 16, queries=4)  # the paper's antialiased bilinear, unchanged
    sample = default.sample(torch.Generator().manual_seed(0))
    crop = default.crop(torch.Generator().manual_seed(0))
    size = tuple(sample.low.shape[2:])
    assert torch.equal(sample.low[0], downscale(crop, size))


def test_photo_split_is_fixed_and_disjoint():
    assert len(HELDOUT_PHOTOS) >= 10 and set(TEST_PHOTOS) <= set(HELDOUT_PHOTOS)
    assert not set(HELDOUT_PHOTOS) & (set(TRAIN_MATE_PHOTOS) | set(TRAIN_PHOTOS))
    assert set(TRAIN_MATE_PHOTOS) | (set(HELDOUT_PHOTOS) & set(MATE_PHOTOS)) == set(MATE_PHOTOS)
