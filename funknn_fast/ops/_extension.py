"""Loads the compiled extension ``funknn_fast._C`` and remembers why it is missing, if it is.

Importing the extension registers the ``funknn_fast::patch_sample*`` operators (CPU kernels, and
CUDA kernels when it was built with a CUDA toolkit) with the PyTorch dispatcher. When it fails to
load, a ``RuntimeWarning`` says why and which torch it was built for (``_build_info.json``,
written by ``setup.py``), since every op then falls back to the slow pure-PyTorch backend;
installs built with ``FUNKNN_NO_EXTENSION=1`` (no extension on purpose) stay quiet.
"""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import torch

BUILD_INFO = Path(__file__).resolve().parents[1] / "_build_info.json"


def build_info() -> dict:
    """``{"extension": bool, "torch": version or None}`` of the build (empty when unknown)."""
    try:
        info = json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _warn_not_loaded(error: str) -> None:
    info = build_info()
    if info.get("extension") is False:
        return
    built = f"built for torch {info['torch']}" if info.get("torch") else "build unknown"
    warnings.warn(
        f"funknn_fast: the compiled extension funknn_fast._C did not load ({error}; {built}, "
        f"running torch {torch.__version__}): patch_sample falls back to the slow pure-PyTorch "
        "backend. Reinstall funknn_fast against this torch "
        "(pip install --no-build-isolation --force-reinstall funknn_fast).",
        RuntimeWarning,
        stacklevel=2,
    )


_load_error: str | None = None
try:
    importlib.import_module("funknn_fast._C")
except (ImportError, OSError) as error:  # not built, or built against another torch
    _load_error = f"{type(error).__name__}: {error}"
    _warn_not_loaded(_load_error)


def extension_loaded() -> bool:
    """True when the compiled operators are registered."""
    return _load_error is None


def extension_error() -> str | None:
    """Why the extension could not be loaded (None when it is loaded)."""
    return _load_error


def has_cuda_kernels() -> bool:
    """True when the extension carries CUDA kernels for ``funknn_fast::patch_sample``."""
    if not extension_loaded():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("funknn_fast::patch_sample", "CUDA")
