"""Reading and writing image files with their bit depth, mode and orientation honoured.

Tensors are float32 (C, H, W) in [0, 1], C = 1 (grey) or 3 (colour); alpha, when present, is a
separate (1, H, W) tensor (straight, not premultiplied). :func:`read_image` returns an
:class:`ImageFile` with the pixels, the alpha and the file's bit depth:

* the EXIF orientation tag is applied (a phone photo stored sideways comes out upright);
* grey stays grey: Pillow modes ``1``, ``L``, ``LA``, ``I;16*`` (16-bit), ``I`` (read as 16-bit
  values, clipped to [0, 65535]) and ``F`` (float, clipped to [0, 1]) give C = 1;
* 16-bit grey files keep 16 bits (``bits = 16``); Pillow reads 16-bit colour PNGs as 8-bit;
* palette images (``P``, ``PA``) are expanded to RGB, with alpha when they carry transparency;
  ``RGBA``, ``LA`` and ``PA`` give an alpha tensor; CMYK, YCbCr, LAB and HSV become RGB.

:func:`write_image` writes PNG (8 or 16 bits for grey, 8 bits for colour; alpha kept) or JPEG
(8 bits, ``quality``; JPEG has no alpha, so alpha is composited over white). Files are written
through a temporary file in the same folder and ``os.replace``: complete or absent.
:class:`ImageFileError` (a ``ValueError``) names the file and what is wrong with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from funknn_fast.atomic_files import write_atomically

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
GREY_MODES = ("1", "L", "LA", "La", "F", *SIXTEEN_BIT_MODES)


class ImageFileError(ValueError):
    """An image file that cannot be read or written (the message names the file)."""


@dataclass
class ImageFile:
    """Pixels (C, H, W) float32 in [0, 1], alpha (1, H, W) or None, bit depth of the file."""

    pixels: torch.Tensor
    alpha: torch.Tensor | None = None
    bits: int = 8


def _open(path: Path):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            opened.load()
            return ImageOps.exif_transpose(opened)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(f"cannot read image {path}: {error}") from error


def _to_tensor(array: np.ndarray, full_scale: float) -> torch.Tensor:
    array = np.asarray(array, dtype=np.float32) / full_scale
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_image(path: str | os.PathLike) -> ImageFile:
    """Reads an image file (any format Pillow reads) as an :class:`ImageFile`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image = _open(path)
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        return ImageFile(_to_tensor(values, 65535.0), bits=16)
    if mode == "F":
        return ImageFile(_to_tensor(np.clip(np.asarray(image), 0.0, 1.0), 1.0))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode not in ("1", "L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    array = np.asarray(image.convert("L") if image.mode == "1" else image)
    if image.mode in ("LA", "RGBA"):
        return ImageFile(_to_tensor(array[..., :-1], 255.0), _to_tensor(array[..., -1], 255.0))
    return ImageFile(_to_tensor(array, 255.0))


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` if its suffix is a writable format (.png, .jpg, .jpeg), else ImageFileError."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ImageFileError(f"{path}: output must end in .png, .jpg or .jpeg")
    return path


def _composite_over_white(pixels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return pixels * alpha + (1 - alpha)


def _quantise(tensor: torch.Tensor, bits: int) -> np.ndarray:
    full = 65535 if bits == 16 else 255
    values = (tensor.detach().float().cpu().clamp(0, 1) * full).round()
    return values.numpy().astype(np.uint16 if bits == 16 else np.uint8).transpose(1, 2, 0)


def write_image(
    path: str | os.PathLike,
    pixels: torch.Tensor,
    alpha: torch.Tensor | None = None,
    bits: int = 8,
    quality: int = 95,
) -> None:
    """Writes pixels (C, H, W) (C = 1 or 3), values clamped to [0, 1] (see module docstring).

    16 bits apply to grey PNGs without alpha (what Pillow writes); every other case is 8-bit.
    """
    from PIL import Image

    path = check_output_path(path)
    fmt = FORMATS[path.suffix.lower()]
    if pixels.dim() != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"pixels must be (1 or 3, H, W), got {tuple(pixels.shape)}")
    if alpha is not None and fmt == "JPEG":
        pixels, alpha = _composite_over_white(pixels, alpha), None
    grey = pixels.shape[0] == 1
    sixteen = bits == 16 and grey and alpha is None and fmt == "PNG"
    layers = pixels if alpha is None else torch.cat((pixels, alpha.to(pixels)))
    array = _quantise(layers, 16 if sixteen else 8)
    if grey and alpha is None:
        picture = Image.fromarray(array[:, :, 0])
    else:
        picture = Image.fromarray(array, mode={2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]])
    options = {"quality": int(quality)} if fmt == "JPEG" else {}
    try:
        write_atomically(path, lambda tmp: picture.save(tmp, format=fmt, **options))
    except OSError as error:
        raise ImageFileError(f"cannot write {path}: {error.strerror or error}") from error
