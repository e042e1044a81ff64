"""The fetched photographs: the fixed held-out split, the fetch script and the extended mix."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from funknn_fast.superres import photos
from funknn_fast.superres.data import TRAIN_PHOTOS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_photos.sh"


def _bash_array(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)", SCRIPT.read_text(), re.MULTILINE)
    assert match, f"no array {name} in {SCRIPT}"
    return match.group(1).split()


def test_extra_photos_are_never_held_out():
    assert not set(photos.EXTRA_PHOTOS) & set(photos.HELDOUT_PHOTOS)
    assert not set(photos.EXTRA_PHOTOS) & set(photos.MATE_PHOTOS)
    assert len(photos.HELDOUT_PHOTOS) == 10  # the split fixed before the extra photographs


def test_fetch_script_copies_exactly_the_listed_photographs():
    fetched = {f"{n}.jpg" for n in (*_bash_array("mate"), *_bash_array("lomiri"))}
    fetched |= {f"plasma-{n}.jpg" for n in _bash_array("plasma")}
    assert fetched == set(photos.MATE_PHOTOS) | set(photos.EXTRA_PHOTOS)
    packages = set(_bash_array("packages"))
    assert {package for package, _, _ in photos.EXTRA_PHOTOS.values()} <= packages
    assert "mate-backgrounds" in packages
    for name, (_package, path, credit) in photos.EXTRA_PHOTOS.items():
        stem = name.removeprefix("plasma-").removesuffix(".jpg")
        assert stem in path and path.startswith("usr/share/")
        assert re.search(r"; (CC-BY-(SA-)?[34]\.0|CC0-1\.0|LGPLv3)$", credit), credit


def _fake_photo_folder(folder: Path, names, size=(800, 1000)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)


def test_extended_mix_has_every_fetched_training_photo_at_two_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNKNN_PHOTOS", str(tmp_path))
    fetched = (*photos.TRAIN_MATE_PHOTOS, *photos.EXTRA_PHOTOS)
    _fake_photo_folder(tmp_path, fetched)
    images = photos.extended_training_photos()
    bundled = [photos.load_bundled_photo(n) for n in TRAIN_PHOTOS]
    assert len(images) == len(bundled) + 2 * len(fetched) == len(bundled) + 52
    for image, reference in zip(images, bundled):
        assert torch.equal(image, reference)
    sides = [min(image.shape[1:]) for image in images[len(bundled):]]
    assert sides == [photos.TRAIN_SHORT_SIDE] * len(fetched) + [photos.EVAL_SIDE] * len(fetched)
    assert tuple(images[len(bundled)].shape) == (3, 768, 960)
    # the second copy is the same photograph, shrunk further
    first, second = images[len(bundled)], images[len(bundled) + len(fetched)]
    assert torch.allclose(photos.shrink_to(first, photos.EVAL_SIDE), second, atol=0.05)


def test_missing_photograph_names_the_fetch_script(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNKNN_PHOTOS", str(tmp_path))
    _fake_photo_folder(tmp_path, photos.TRAIN_MATE_PHOTOS, size=(20, 20))
    with pytest.raises(FileNotFoundError, match="fetch_photos.sh"):
        photos.extended_training_photos()
