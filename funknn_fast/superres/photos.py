"""Real photographs for training and held-out evaluation, with a fixed split.

The photographs are not in the repository: ``scripts/fetch_photos.sh`` downloads the Debian
package ``mate-backgrounds`` (``apt-get download``), unpacks it (``dpkg -x``) and copies the
photographs of ``mate/nature`` into :func:`photo_dir` (``$FUNKNN_PHOTOS`` or
``~/.cache/funknn_fast/photos``). Every file was looked at: all twelve of ``mate/nature`` are
photographs. ``ukui-wallpapers`` (also fetched by the script, for the record) holds none: its
twelve images are digital drawings and 3-D renders (2004default, calla, city, desert,
firstgeneration, fluent-color, focal-ubuntukylin, goldfish, rhythm, rollpaper, string,
the-mouse), so none is used. Licences (``/usr/share/doc/mate-backgrounds/copyright``): every
``nature/*.jpg`` is GPL-2+ (authors in :data:`MATE_PHOTOS`).

Split (fixed before any evaluation, to mix macro/bokeh shots with textures and landscapes):
:data:`HELDOUT_PHOTOS` = 7 mate photographs + the bundled held-out three (astronaut, coffee,
flower; ``data.TEST_PHOTOS``) = 10 photographs; :data:`TRAIN_MATE_PHOTOS` = the other 5 mate
photographs, used for training with the bundled ``data.TRAIN_PHOTOS`` (:func:`training_photos`).

Preprocessing (images are float32 (3, H, W) in [0, 1]): training photographs larger than
:data:`TRAIN_SHORT_SIDE` on their shorter side are downscaled to it (Pillow bicubic,
``degradations.degrade``), which also averages away JPEG artefacts; a held-out image
(:func:`heldout_image`) is the photograph downscaled so its shorter side is
:data:`EVAL_SIDE` then centre-cropped to EVAL_SIDE x EVAL_SIDE (384 = divisible by 2, 3, 4, 8).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from funknn_fast.superres.data import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    load_bundled_photo,
    load_image,
)
from funknn_fast.superres.degradations import degrade

# file name in mate-backgrounds' usr/share/backgrounds/mate/nature/ -> copyright holder (GPL-2+)
MATE_PHOTOS: dict[str, str] = {
    "Aqua.jpg": "2008, Charles Barbin",
    "Blinds.jpg": "2008, Lennart Poettering, Andrea Cimitan",
    "Dune.jpg": "2007, Marco Cogoni; 2008, Hylke Bons",
    "FreshFlower.jpg": "2005, Jens Ansorg",
    "Garden.jpg": "2008, Charles Barbin",
    "GreenMeadow.jpg": "2005, Timothy Schellhase; 2008, Lapo Calamandrei",
    "LadyBird.jpg": "2008, Charles Barbin",
    "RainDrops.jpg": "2008, blackcombwhistler07",
    "Storm.jpg": "2008, Sergey Nazarov",
    "TwoWings.jpg": "2008, Charles Barbin, Hylke Bons",
    "Wood.jpg": "2008, Jean-Francois Fortin Tam",
    "YellowFlower.jpg": "2008, Charles Barbin",
}
HELDOUT_MATE_PHOTOS = ("Aqua.jpg", "Dune.jpg", "Garden.jpg", "LadyBird.jpg", "Storm.jpg",
                       "Wood.jpg", "YellowFlower.jpg")
TRAIN_MATE_PHOTOS = tuple(n for n in MATE_PHOTOS if n not in HELDOUT_MATE_PHOTOS)
HELDOUT_PHOTOS = (*HELDOUT_MATE_PHOTOS, *TEST_PHOTOS)
TRAIN_SHORT_SIDE = 768
EVAL_SIDE = 384


def photo_dir() -> Path:
    """Folder of the fetched photographs: ``$FUNKNN_PHOTOS`` or ``~/.cache/funknn_fast/photos``."""
    env = os.environ.get("FUNKNN_PHOTOS")
    return Path(env) if env else Path.home() / ".cache" / "funknn_fast" / "photos"


def load_photo(name: str) -> torch.Tensor:
    """A fetched mate photograph (file name) or a bundled one (``data.BUNDLED_PHOTOS`` name)."""
    if name in MATE_PHOTOS:
        path = photo_dir() / name
        if not path.is_file():
            raise FileNotFoundError(
                f"photograph {path} not found: run scripts/fetch_photos.sh (or set FUNKNN_PHOTOS)"
            )
        return load_image(path)
    return load_bundled_photo(name)


def shrink_to(image: torch.Tensor, short_side: int) -> torch.Tensor:
    """(C, H, W) downscaled (Pillow bicubic) so min(H, W) <= short_side; unchanged if smaller."""
    height, width = image.shape[1:]
    if min(height, width) <= short_side:
        return image
    factor = short_side / min(height, width)
    size = (max(short_side, round(height * factor)), max(short_side, round(width * factor)))
    return degrade(image, size, "bicubic").clamp(0, 1)


def training_photos() -> list[torch.Tensor]:
    """The training mix: bundled ``TRAIN_PHOTOS`` + :data:`TRAIN_MATE_PHOTOS` (shrunk)."""
    images = [load_bundled_photo(n) for n in TRAIN_PHOTOS]
    images += [shrink_to(load_photo(n), TRAIN_SHORT_SIDE) for n in TRAIN_MATE_PHOTOS]
    return images


def heldout_image(name: str, side: int = EVAL_SIDE) -> torch.Tensor:
    """A held-out photograph as its centred side x side ground truth (see module docstring)."""
    image = shrink_to(load_photo(name), side)
    height, width = image.shape[1:]
    if min(height, width) < side:
        raise ValueError(f"photograph {name} is smaller than {side} pixels")
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side].contiguous()
