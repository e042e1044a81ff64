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

A larger training set (``--data photos-extended``, :func:`extended_training_photos`) adds the
photographs of :data:`EXTRA_PHOTOS`, fetched by the same script from ``lomiri-wallpapers-16.04``,
``lomiri-wallpapers-20.04`` (Ubuntu Touch community wallpapers, CC-BY-4.0 / CC-BY-SA-3.0/4.0 /
CC0-1.0 per file) and ``plasma-workspace-wallpapers`` (KDE, LGPLv3; the largest size shipped,
2560 x 1600). Every image of those packages was looked at; kept are the 21 photographs, left out
are drawings, renders and composites (lomiri: analogpattern (an abstract texture), umang, Fossa,
Infinite-Sea, Painting-Colors, warty-final-ubuntu; plasma: every other wallpaper, and the nearly
featureless sky and fog photographs ColdRipple, DarkestHour, Kite and summer_1am). None is
held out: the held-out split above was fixed before they were added and stays as it is. Each
training photograph of that set is used at two sizes, shorter side :data:`TRAIN_SHORT_SIDE` and
:data:`EVAL_SIDE` (the held-out ground truths are photographs shrunk to EVAL_SIDE, much cleaner
per pixel than a 768 version: the second size puts that statistics into training).

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
# file name in photo_dir() -> (Debian package, path inside it, copyright holder and licence)
_LOMIRI = "usr/share/backgrounds/"
_PLASMA = "usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
EXTRA_PHOTOS: dict[str, tuple[str, str, str]] = {
    **{
        f"{name}.jpg": ("lomiri-wallpapers-16.04", f"{_LOMIRI}{name}.jpg", credit)
        for name, credit in {
            "aitzgorri_by_Aitzol_Berasategi": "2018, Aitzol Berasategi; CC-BY-4.0",
            "Bridge_by_Sander_Klootwijk": "2018, Sander Klootwijk; CC-BY-SA-4.0",
            "Dragonfly_by_Bolly": "2018, Bolly; CC-BY-SA-4.0",
            "free_by_Peter_Nerlich": "2018, Peter Nerlich; CC-BY-SA-4.0",
            "friends_by_Aitzol_Berasategi": "2018, Aitzol Berasategi; CC-BY-4.0",
            "greentock_by_Peter_Nerlich": "2018, Peter Nerlich; CC-BY-SA-4.0",
            "life_by_Aitzol_Berasategi": "2018, Aitzol Berasategi; CC-BY-4.0",
            "picosdeeuropa_by_Aitzol_Berasategi": "2018, Aitzol Berasategi; CC-BY-4.0",
            "Picture_0B_by_freespace": "2018, Trevor 'Freespace'; CC-BY-4.0",
            "Picture_1A_by_freespace": "2018, Trevor 'Freespace'; CC-BY-4.0",
            "seeding_by_Clements_Engelhardt": "2018, Clemens Engelhardt; CC0-1.0",
            "sunset_by_Aitzol_Berasategi": "2018, Aitzol Berasategi; CC-BY-4.0",
            "Wine_by_Jakkub_Mede": "2018, Jakub Mede; CC-BY-4.0",
        }.items()
    },
    "Kleiber_by_Lukas_Baubkus.jpg": ("lomiri-wallpapers-20.04",
                                     f"{_LOMIRI}Kleiber_by_Lukas_Baubkus.jpg",
                                     "2021, Lukas Baubkus; CC-BY-SA-3.0"),
    **{
        f"plasma-{name}.jpg": ("plasma-workspace-wallpapers", _PLASMA.format(name),
                               f"{author}; LGPLv3")
        for name, author in {
            "BytheWater": "Maciej Wiklo",
            "ColorfulCups": "Dmitri Popov",
            "EveningGlow": "Ian Hex",
            "FallenLeaf": "Martin Klapetek",
            "Grey": "Sigi Sagi",
            "OneStandsOut": "Risto Saukonpää",
            "Path": "Risto Saukonpää",
        }.items()
    },
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
    """A fetched photograph (a file name of :data:`MATE_PHOTOS` or :data:`EXTRA_PHOTOS`) or a
    bundled one (``data.BUNDLED_PHOTOS`` name)."""
    if name in MATE_PHOTOS or name in EXTRA_PHOTOS:
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


def extended_training_photos() -> list[torch.Tensor]:
    """:func:`training_photos` + :data:`EXTRA_PHOTOS` (shrunk to TRAIN_SHORT_SIDE), and every
    fetched training photograph once more at shorter side :data:`EVAL_SIDE`."""
    fetched = [load_photo(n) for n in (*TRAIN_MATE_PHOTOS, *EXTRA_PHOTOS)]
    images = [load_bundled_photo(n) for n in TRAIN_PHOTOS]
    images += [shrink_to(image, side) for side in (TRAIN_SHORT_SIDE, EVAL_SIDE)
               for image in fetched]
    return images


def heldout_image(name: str, side: int = EVAL_SIDE) -> torch.Tensor:
    """A held-out photograph as its centred side x side ground truth (see module docstring)."""
    image = shrink_to(load_photo(name), side)
    height, width = image.shape[1:]
    if min(height, width) < side:
        raise ValueError(f"photograph {name} is smaller than {side} pixels")
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side].contiguous()
