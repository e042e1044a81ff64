"""Saving and loading FunkNN weights without pickle: ``<stem>.safetensors`` + ``<stem>.json``.

The JSON file holds ``{"format": "funknn_fast.funknn", "format_version": 2, "model":
FunkNN.config(), ...}`` plus any extra metadata (training command, steps, ...); the safetensors
file holds the state dict. :func:`load_model` rebuilds the model from the JSON and checks the
format version and every tensor's name and shape.

Format versions: 1 (no ``format_version`` field) fed the raw patch to the per-patch network;
2 feeds ``INPUT_SCALE * (patch - centre sample)`` (``funknn_fast.models.funknn``). Version-1
weights have the same tensor names and shapes but compute a different function, so they are refused
instead of
loading silently.
The shipped weights live in ``funknn_fast/weights/`` (:data:`DEFAULT_WEIGHTS` for rendering,
:data:`DERIVATIVES_WEIGHTS` for exact derivatives).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from funknn_fast.atomic_files import write_atomically, write_text_atomically
from funknn_fast.models.funknn import FunkNN
from funknn_fast.ops.padding import PADDING_CODES

FORMAT = "funknn_fast.funknn"
FORMAT_VERSION = 2
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# The default for rendering (``funknn superres``, ``load_model()``): the lattice variant trained on
# 41 photographs with a mix of downscaling kernels, fine-tuned densely; about 30x faster than
# the paper's cnn on pixel grids and better on Pillow-bicubic inputs (BENCHMARKS.md, issue 13).
DEFAULT_WEIGHTS = WEIGHTS_DIR / "funknn_lattice_photos_extended.safetensors"
# The default for exact derivatives (``funknn derivatives``): patch jets cover cnn and mlp only.
DERIVATIVES_WEIGHTS = WEIGHTS_DIR / "funknn_cnn_continuous.safetensors"


class WeightsError(ValueError):
    """Weights files are missing, unreadable or do not match their config."""


def shipped_models() -> list[str]:
    """Names of the shipped FunkNN weights (stems in :data:`WEIGHTS_DIR`)."""
    names = []
    for json_path in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            info = json.loads(json_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("format") == FORMAT:
            names.append(json_path.stem)
    return names


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A shipped model's name (``shipped_models()``) -> its path; any other value as a path."""
    text = os.fspath(name_or_path)
    if text in shipped_models():
        return WEIGHTS_DIR / f"{text}.safetensors"
    return Path(text)


def weight_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(safetensors, json) paths for ``path`` given with or without a suffix."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path,
                        metadata: dict[str, str] | None = None) -> None:
    """``safetensors`` file (world-readable, like any installed data file) written complete or
    not at all (``atomic_files``); ``metadata`` goes to the file's string header."""

    def write(tmp: Path) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)
        os.chmod(tmp, 0o644)

    write_atomically(path, write)


def save_model(model: FunkNN, path: str | os.PathLike, metadata: dict[str, Any] | None = None
               ) -> tuple[Path, Path]:
    """Writes ``path``.safetensors and ``path``.json; returns both paths."""
    tensor_path, json_path = weight_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(dict(model.state_dict()), tensor_path)
    info = {"format": FORMAT, "model": model.config(), **(metadata or {}),
            "format_version": FORMAT_VERSION}
    write_text_atomically(json_path, json.dumps(info, indent=2) + "\n")
    return tensor_path, json_path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a weights file pair."""
    _, json_path = weight_paths(path)
    if not json_path.is_file():
        raise WeightsError(f"weights config not found: {json_path}")
    try:
        info = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"weights config {json_path} is not valid JSON: {error}") from error
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise WeightsError(f"{json_path} is not a funknn_fast weights config (format {FORMAT})")
    version = info.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{json_path} has format_version {version!r}; this funknn_fast reads version "
            f"{FORMAT_VERSION} (version 1 fed raw patches to the network, see "
            "funknn_fast.models.checkpoint): retrain or re-export these weights"
        )
    _check_fields(info, json_path)
    return info


def _check_fields(info: dict[str, Any], json_path: Path) -> None:
    """The fields readers rely on have the right types and values (errors name the file)."""
    for name in ("model", "train"):
        if name in info and not isinstance(info[name], dict):
            raise WeightsError(f"{json_path}: {name!r} must be a JSON object, got "
                               f"{info[name]!r}")
    padding = info["model"].get("padding", "reflection")
    if padding not in PADDING_CODES:
        raise WeightsError(f"{json_path}: model padding must be one of {sorted(PADDING_CODES)}, "
                           f"got {padding!r}")


def load_model(path: str | os.PathLike = DEFAULT_WEIGHTS, **overrides: Any) -> FunkNN:
    """Rebuilds a FunkNN from ``path`` (.safetensors + .json); ``overrides`` go to FunkNN()."""
    tensor_path, json_path = weight_paths(path)
    info = read_metadata(path)
    try:
        model = FunkNN(**{**info["model"], **overrides})
    except (TypeError, ValueError) as error:
        raise WeightsError(f"bad model config in {json_path}: {error}") from error
    if not tensor_path.is_file():
        raise WeightsError(f"weights file not found: {tensor_path}")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"weights file {tensor_path} is corrupt: {error}") from error
    expected = model.state_dict()
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise WeightsError(f"{tensor_path} does not match its config: missing {missing}, "
                           f"unexpected {extra}")
    for name, value in tensors.items():
        if value.shape != expected[name].shape:
            raise WeightsError(f"{tensor_path}: {name} has shape {tuple(value.shape)}, "
                               f"expected {tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
    return model.eval()
