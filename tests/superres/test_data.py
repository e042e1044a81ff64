"""Data: image loading, bundled split, antialiased downscale, training samples."""

import numpy as np
import pytest
import torch
from PIL import Image

from funknn_fast.superres.data import (
    BUNDLED_PHOTOS,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    CropSampler,
    bundled_photo_path,
    dense_sizes,
    downscale,
    load_bundled_photo,
    load_folder,
    load_image,
    pixel_centre_coords,
    save_image,
)


def test_split_is_fixed_and_disjoint():
    assert set(TEST_PHOTOS) == {"astronaut", "coffee", "flower"}
    assert not set(TEST_PHOTOS) & set(TRAIN_PHOTOS)
    assert set(TEST_PHOTOS) | set(TRAIN_PHOTOS) == set(BUNDLED_PHOTOS)
    for name in BUNDLED_PHOTOS:
        assert bundled_photo_path(name).is_file(), name
    image = load_bundled_photo("coins")  # grayscale -> 3 equal channels
    assert image.shape[0] == 3 and torch.equal(image[0], image[2])
    with pytest.raises(ValueError, match="unknown bundled photo"):
        bundled_photo_path("lena")


def test_load_save_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    Image.fromarray(array[:, :, 0]).save(tmp_path / "b.jpg", quality=100)
    (tmp_path / "notes.txt").write_text("x")
    image = load_image(tmp_path / "a.png")
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert np.array_equal((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), array)
    assert len(load_folder(tmp_path)) == 2
    save_image(image, tmp_path / "c.png")
    assert torch.equal(load_image(tmp_path / "c.png"), image)
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="end in"):
        save_image(image, tmp_path / "c.gif")


def test_downscale_is_pillow_bilinear_antialias():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (24, 36), dtype=np.uint8)
    ours = downscale(torch.from_numpy(array).float()[None] / 255, (8, 12))[0] * 255
    pillow = np.asarray(Image.fromarray(array).resize((12, 8), Image.BILINEAR), dtype=np.float32)
    assert np.abs(ours.numpy() - pillow).max() <= 1.0


def test_pixel_centres():
    coords = pixel_centre_coords(2, 4)
    assert coords.shape == (8, 2)
    assert torch.allclose(coords[0], torch.tensor([-0.75, -0.5]))
    assert torch.allclose(coords[-1], torch.tensor([0.75, 0.5]))


@pytest.mark.parametrize("mode", ["single", "continuous", "factor"])
def test_crop_sampler_modes(mode):
    torch.manual_seed(0)
    images = [torch.rand(3, 40, 50), torch.rand(3, 33, 33)]
    sampler = CropSampler(images, crop_size=32, mode=mode, queries=7)
    generator = torch.Generator().manual_seed(3)
    for _ in range(5):
        sample = sampler.sample(generator)
        d = sample.low.shape[-1]
        if mode == "single":
            assert d == 16
        elif mode == "continuous":
            assert 8 <= d <= 16
        else:
            assert 4 <= d < 16
        assert sample.coords.shape == (1, 7, 2) and sample.targets.shape == (1, 7, 3)
        assert sample.coords.abs().max() < 1
    # targets are the target image's pixels at the queried centres (single: the crop itself)
    sampler = CropSampler([torch.rand(3, 32, 32)], crop_size=32, mode="single", queries=50)
    sample = sampler.sample(torch.Generator().manual_seed(0))
    image = sampler.images[0]
    variants = [image, image.flip(2), image.flip(1), image.flip(1).flip(2)]
    variants += [v.transpose(1, 2) for v in variants]
    grid = sample.coords[0].view(1, 1, 50, 2)
    matches = [torch.allclose(torch.nn.functional.grid_sample(
        v[None], grid, mode="nearest", align_corners=False)[0, :, 0].t(), sample.targets[0])
        for v in variants]
    assert any(matches)
    again = sampler.sample(torch.Generator().manual_seed(0))
    assert torch.equal(again.targets, sample.targets)


def test_crop_sampler_errors():
    with pytest.raises(ValueError, match="mode"):
        CropSampler([torch.rand(3, 20, 20)], 16, mode="zoom")
    with pytest.raises(ValueError, match="crop_size"):
        CropSampler([torch.rand(3, 10, 10)], 16)


def test_dense_sizes_give_whole_low_resolution_sides():
    assert dense_sizes(96, 2) == (96, 48)
    assert dense_sizes(96, 3) == (96, 32)
    assert dense_sizes(96, 2.5) == (95, 38)
    assert dense_sizes(96, 3.5) == (91, 26)
    assert dense_sizes(96, 8 / 3) == (96, 36)
    for scale in (2.7183, 0.5):
        with pytest.raises(ValueError, match="scales"):
            dense_sizes(96, scale)
    with pytest.raises(ValueError, match="crop_size"):
        dense_sizes(4, 7)


def test_sample_dense_is_a_crop_and_its_downscale():
    image = torch.rand(3, 40, 44, generator=torch.Generator().manual_seed(1))
    sampler = CropSampler([image], crop_size=32, mode="continuous", queries=1)
    low, target = sampler.sample_dense(torch.Generator().manual_seed(2), 2.5)
    assert target.shape == (3, 30, 30) and low.shape == (3, 12, 12)
    assert torch.equal(low, downscale(target, (12, 12)))
    # the target is a 30 x 30 window of the image, up to flips and transposition
    variants = [image, image.flip(2), image.flip(1), image.flip(1).flip(2)]
    variants += [v.transpose(1, 2) for v in variants]
    windows = [v.unfold(1, 30, 1).unfold(2, 30, 1) for v in variants]  # (3, i, j, 30, 30)
    assert any((w == target[:, None, None]).all(0).all(-1).all(-1).any() for w in windows)
    again = sampler.sample_dense(torch.Generator().manual_seed(2), 2.5)
    assert torch.equal(again[1], target)
