"""Images and training samples for FunkNN super-resolution.

Images are float32 tensors (3, H, W) in [0, 1]: files are read by
``funknn_fast.superres.image_io.read_image`` (EXIF orientation applied, 16-bit precision kept),
grey images are repeated to 3 channels and alpha is composited over white.

Sources:
  * any folder of PNG / JPEG files (:func:`load_folder`, sorted by file name);
  * the photographs bundled in installed packages (:data:`BUNDLED_PHOTOS`), with a fixed split:
    :data:`TEST_PHOTOS` = astronaut, coffee (skimage.data) and flower (sklearn) are held out;
    every other entry of :data:`BUNDLED_PHOTOS` is in :data:`TRAIN_PHOTOS`. Synthetic images of
    those packages (charts, text, binary masks, phantoms) are not used.

Low resolution: :func:`downscale` is the antialiased bilinear resize of the paper, i.e.
``F.interpolate(mode="bilinear", antialias=True, align_corners=False)``, a triangle (tent)
filter widened by the downscale factor, the same filter as Pillow's ``Image.BILINEAR`` resize.
The low- and high-resolution images cover the same square field of view, so a coordinate in the
``grid_sample`` convention (align_corners=False) means the same point in both.

Training samples (:class:`CropSampler`): a random crop n x n of a random image, random
horizontal/vertical flips and transposition, then per mode ("single" | "continuous" | "factor"):
  * single:     low resolution d = n / 2, target the n x n crop;
  * continuous: d uniform integer with n / max_scale <= d <= n / min_scale, target n x n;
  * factor:     d uniform integer in [n / 8, n / 2), target the crop downscaled to 2d x 2d;
and ``queries`` random target pixels (with replacement) queried at their centres. The
low-resolution crop is made by :func:`downscale` (``kernels=("antialiased",)``, the default), or
with a kernel drawn uniformly per crop from ``kernels`` (``degradations.KERNELS``: bicubic,
bilinear, area, lanczos, antialiased, blur; blur's sigma drawn in ``BLUR_SIGMA_RANGE``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

from funknn_fast.extras import require
from funknn_fast.superres.degradations import BLUR_SIGMA_RANGE, KERNELS, degrade
from funknn_fast.superres.image_io import IMAGE_SUFFIXES, read_image, write_image

MODES = ("single", "continuous", "factor")


def _skimage_path(filename: str) -> Path:
    return Path(os.path.dirname(require("skimage.data").__file__)) / filename


def _sklearn_path(filename: str) -> Path:
    return Path(os.path.dirname(require("sklearn.datasets").__file__)) / "images" / filename


def _matplotlib_path(filename: str) -> Path:
    return Path(require("matplotlib").get_data_path()) / "sample_data" / filename


# name -> (package, file name)
BUNDLED_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"),
    "coffee": ("skimage", "coffee.png"),
    "flower": ("sklearn", "flower.jpg"),
    "chelsea": ("skimage", "chelsea.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "motorcycle_right.png"),
    "hubble_deep_field": ("skimage", "hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "ihc.png"),
    "retina": ("skimage", "retina.jpg"),
    "camera": ("skimage", "camera.png"),
    "moon": ("skimage", "moon.png"),
    "coins": ("skimage", "coins.png"),
    "brick": ("skimage", "brick.png"),
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "china": ("sklearn", "china.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
TEST_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "flower")
TRAIN_PHOTOS: tuple[str, ...] = tuple(n for n in BUNDLED_PHOTOS if n not in TEST_PHOTOS)

_PACKAGE_PATHS = {
    "skimage": _skimage_path, "sklearn": _sklearn_path, "matplotlib": _matplotlib_path
}


def bundled_photo_path(name: str) -> Path:
    """File of a bundled photograph (see :data:`BUNDLED_PHOTOS`)."""
    if name not in BUNDLED_PHOTOS:
        raise ValueError(
            f"unknown bundled photo {name!r}; expected one of {sorted(BUNDLED_PHOTOS)}"
        )
    package, filename = BUNDLED_PHOTOS[name]
    return _PACKAGE_PATHS[package](filename)


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Reads an image file (any Pillow format) as a float32 RGB (3, H, W) tensor in [0, 1]."""
    image = read_image(path)
    pixels = image.pixels.expand(3, -1, -1)
    if image.alpha is not None:
        pixels = pixels * image.alpha + (1 - image.alpha)
    return pixels.contiguous()


def load_bundled_photo(name: str) -> torch.Tensor:
    """A bundled photograph as a float32 (3, H, W) tensor in [0, 1]."""
    return load_image(bundled_photo_path(name))


def load_folder(folder: str | os.PathLike) -> list[torch.Tensor]:
    """Every PNG/JPEG of ``folder`` (not recursive, sorted by name) as (3, H, W) tensors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no PNG/JPEG images in {folder}")
    return [load_image(p) for p in files]


def load_photos(names: Sequence[str]) -> list[torch.Tensor]:
    """Bundled photographs by name."""
    return [load_bundled_photo(n) for n in names]


def save_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Writes a (C, H, W) or (1, C, H, W) 8-bit image in [0, 1] (clamped), complete or absent
    (``image_io.write_image``)."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image takes one image, got batch of {image.shape[0]}")
        image = image[0]
    write_image(path, image)


def downscale(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize (triangle filter) of (B, C, H, W) or (C, H, W) to (h, w)."""
    squeeze = image.dim() == 3
    batch = image.unsqueeze(0) if squeeze else image
    out = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0] if squeeze else out


def pixel_centre_coords(height: int, width: int, dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """(H W, 2) coordinates (x, y) of the pixel centres of an H x W image, row-major."""
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1)
    return coords.to(dtype=dtype, device=device)


def dense_sizes(crop_size: int, scale: float) -> tuple[int, int]:
    """(n, d): the largest target side n <= ``crop_size`` with a whole low-resolution side
    d = n / ``scale`` (``scale`` a fraction p / q with q <= 8: n is a multiple of p)."""
    fraction = Fraction(scale).limit_denominator(8)
    if fraction < 1 or abs(float(fraction) - scale) > 1e-9:
        raise ValueError(f"dense training scales must be fractions p/q >= 1 with q <= 8, "
                         f"got {scale!r}")
    n = crop_size // fraction.numerator * fraction.numerator
    if n == 0:
        raise ValueError(f"crop_size {crop_size} is smaller than the numerator of scale {scale}")
    return n, n * fraction.denominator // fraction.numerator


@dataclass
class Sample:
    """One training example: low-res (1, C, d, d), coords (1, Q, 2), targets (1, Q, C)."""

    low: torch.Tensor
    coords: torch.Tensor
    targets: torch.Tensor


class CropSampler:
    """Random training samples from a list of (C, H, W) images (see module docstring)."""

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        crop_size: int = 96,
        mode: str = "continuous",
        queries: int = 512,
        min_scale: float = 2.0,
        max_scale: float = 4.0,
        kernels: Sequence[str] = ("antialiased",),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if crop_size < 8:
            raise ValueError(f"crop_size must be >= 8, got {crop_size}")
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        if not 1.0 <= min_scale <= max_scale:
            raise ValueError(f"need 1 <= min_scale <= max_scale, got {min_scale}, {max_scale}")
        images = [im for im in images if min(im.shape[1:]) >= crop_size]
        if not images:
            raise ValueError(f"no image is at least crop_size = {crop_size} pixels on each side")
        self.images = list(images)
        self.crop_size = crop_size
        self.mode = mode
        self.queries = queries
        unknown = [k for k in kernels if k not in KERNELS]
        if not kernels or unknown:
            raise ValueError(f"kernels must be a non-empty subset of {KERNELS}, got {kernels!r}")
        self.kernels = tuple(kernels)
        self.low_range = (
            max(1, math.ceil(crop_size / max_scale)), max(1, math.floor(crop_size / min_scale))
        )
        # Images are drawn in proportion to their area.
        areas = torch.tensor([float(im.shape[1] * im.shape[2]) for im in self.images])
        self.weights = areas / areas.sum()

    def _randint(self, low: int, high: int, generator: torch.Generator) -> int:
        """Uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    def crop(self, generator: torch.Generator) -> torch.Tensor:
        """A random n x n crop (C, n, n) with random flips and transposition."""
        image = self.images[int(torch.multinomial(self.weights, 1, generator=generator))]
        n = self.crop_size
        top = self._randint(0, image.shape[1] - n, generator)
        left = self._randint(0, image.shape[2] - n, generator)
        crop = image[:, top : top + n, left : left + n]
        flips = torch.randint(0, 2, (3,), generator=generator).tolist()
        if flips[0]:
            crop = crop.flip(2)
        if flips[1]:
            crop = crop.flip(1)
        if flips[2]:
            crop = crop.transpose(1, 2)
        return crop.contiguous()

    def _degrade(self, crop: torch.Tensor, low_size: int,
                 generator: torch.Generator) -> torch.Tensor:
        """``crop`` (C, n, n) downscaled to (C, low_size, low_size) with a kernel drawn from
        ``kernels`` (antialiased bilinear alone draws nothing)."""
        if self.kernels == ("antialiased",):
            return downscale(crop, (low_size, low_size))
        kernel = self.kernels[self._randint(0, len(self.kernels) - 1, generator)]
        sigma = BLUR_SIGMA_RANGE[0] + (BLUR_SIGMA_RANGE[1] - BLUR_SIGMA_RANGE[0]) * float(
            torch.rand((), generator=generator))
        return degrade(crop, (low_size, low_size), kernel, blur_sigma=sigma).clamp(0, 1)

    def sample_dense(self, generator: torch.Generator,
                     scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One example supervised on every pixel: (low (C, d, d), target (C, n, n)).

        n x n is the top-left corner of a random crop (flips and transposition as
        :meth:`crop`) with n = d * ``scale`` exactly (:func:`dense_sizes`); the low-resolution
        image is made with a kernel drawn from ``kernels``, as in :meth:`sample`.
        """
        n, low_size = dense_sizes(self.crop_size, scale)
        target = self.crop(generator)[:, :n, :n].contiguous()
        return self._degrade(target, low_size, generator), target

    def sample(self, generator: torch.Generator) -> Sample:
        """One random example (see :class:`Sample`)."""
        crop = self.crop(generator)
        n = self.crop_size
        if self.mode == "single":
            low_size = n // 2
            target = crop
        elif self.mode == "continuous":
            low_size = self._randint(*self.low_range, generator)
            target = crop
        else:
            low_size = self._randint(max(1, math.ceil(n / 8)), max(1, n // 2 - 1), generator)
            target = downscale(crop, (2 * low_size, 2 * low_size))
        low = self._degrade(crop, low_size, generator)
        height, width = target.shape[1:]
        index = torch.randint(0, height * width, (self.queries,), generator=generator)
        coords = torch.stack(
            ((2 * (index % width) + 1) / width - 1, (2 * (index // width) + 1) / height - 1), dim=1
        ).float()
        targets = target.reshape(target.shape[0], -1)[:, index].t()
        return Sample(low.unsqueeze(0), coords.unsqueeze(0), targets.unsqueeze(0))
