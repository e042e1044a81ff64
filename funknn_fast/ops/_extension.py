"""Loads the compiled extension ``funknn_fast._C`` and remembers why it is missing, if it is.

Importing the extension registers the ``funknn_fast::patch_sample*`` operators (CPU kernels, and
CUDA kernels when it was built with a CUDA toolkit) with the PyTorch dispatcher.
"""

from __future__ import annotations

import importlib

import torch

_load_error: str | None = None
try:
    importlib.import_module("funknn_fast._C")
except (ImportError, OSError) as error:  # not built, or built against another torch
    _load_error = f"{type(error).__name__}: {error}"


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
