"""Backends of ``patch_sample``: what exists on this install, and which one runs a call.

Backends:
  * ``"torch"``  pure-PyTorch reference (any device, any floating dtype, any derivative order);
  * ``"cpu"``    compiled C++ kernels (CPU tensors, float32/float64, exact to second order);
  * ``"cuda"``   compiled CUDA C++ kernels (CUDA tensors), from ``csrc/cuda``;
  * ``"triton"`` fused Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1).

``"auto"`` takes, for the tensors' device, the first available of: triton, cuda (on CUDA); cpu
(on CPU); then torch. The environment variable ``FUNKNN_BACKEND`` replaces ``"auto"``. An
explicitly named backend that cannot run the call raises ``BackendUnavailableError``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import dataclass

import torch

from funknn_fast.ops import _extension

BACKEND_NAMES = ("torch", "cpu", "cuda", "triton")
LOW_PRECISION = (torch.float16, torch.bfloat16)


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run on this install or for these tensors."""


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run on this install, and why not when it cannot."""

    name: str
    available: bool
    reason: str


@functools.lru_cache(maxsize=1)
def _triton_status() -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if not (torch.cuda.is_available() or interpret):
        return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU tensors)"
    try:
        importlib.import_module("funknn_fast.kernels.patch_sample_triton")
    except ImportError as error:
        return False, f"the Triton kernels failed to import: {error}"
    return True, "interpreter on CPU tensors" if interpret else "CUDA device"


def backends() -> dict[str, BackendStatus]:
    """Status of every backend on this install, keyed by name."""
    ext_reason = _extension.extension_error()
    cpu_ok = _extension.extension_loaded()
    cuda_ok = _extension.has_cuda_kernels() and torch.cuda.is_available()
    if cuda_ok:
        cuda_reason = "CUDA kernels built and a CUDA device is present"
    elif not cpu_ok:
        cuda_reason = f"compiled extension not loaded ({ext_reason})"
    elif not _extension.has_cuda_kernels():
        cuda_reason = "extension built without CUDA (no CUDA toolkit or CPU-only torch)"
    else:
        cuda_reason = "no CUDA device"
    triton_ok, triton_reason = _triton_status()
    return {
        "torch": BackendStatus("torch", True, "pure PyTorch, always available"),
        "cpu": BackendStatus(
            "cpu", cpu_ok, "C++ kernels loaded" if cpu_ok else f"not loaded ({ext_reason})"
        ),
        "cuda": BackendStatus("cuda", cuda_ok, cuda_reason),
        "triton": BackendStatus("triton", triton_ok, triton_reason),
    }


def _unsupported_reason(name: str, device: str, dtype: torch.dtype) -> str | None:
    """Why backend ``name`` cannot run on tensors of this device type and dtype (None if it can)."""
    status = backends()[name]
    if not status.available:
        return status.reason
    if name == "cpu":
        if device != "cpu":
            return f"it runs on CPU tensors, got {device}"
        if dtype not in (torch.float32, torch.float64):
            return f"it supports float32 and float64, got {dtype}"
    if name == "cuda" and device != "cuda":
        return f"it runs on CUDA tensors, got {device}"
    if name == "triton" and device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"it runs on CUDA tensors (or CPU under TRITON_INTERPRET=1), got {device}"
    return None


def _resolve(requested: str, device: str, dtype: torch.dtype) -> str:
    """The backend name, or "!" followed by the error message (constant under torch.compile)."""
    if requested == "auto":
        requested = os.environ.get("FUNKNN_BACKEND", "auto") or "auto"
        if requested != "auto" and requested not in BACKEND_NAMES:
            return f"!FUNKNN_BACKEND must be one of {('auto',) + BACKEND_NAMES}, got {requested!r}"
    if requested == "auto":
        order = ("triton", "cuda") if device == "cuda" else ("cpu",)
        for name in order:
            if _unsupported_reason(name, device, dtype) is None:
                return name
        return "torch"
    if requested not in BACKEND_NAMES:
        return f"!backend must be one of {('auto',) + BACKEND_NAMES}, got {requested!r}"
    reason = _unsupported_reason(requested, device, dtype)
    if reason is not None:
        return f"?backend {requested!r} is unavailable: {reason}"
    return requested


# What ``torch.compiler.assume_constant_result`` does (checked by tests/cli/test_entry_point.py),
# without importing torch._dynamo at package import (over a second).
_resolve._dynamo_marked_constant = True


def select_backend(requested: str, image: torch.Tensor) -> str:
    """Name of the backend that runs a call on ``image``'s device and dtype."""
    name = _resolve(requested, image.device.type, image.dtype)
    if name.startswith("!"):
        raise ValueError(name[1:])
    if name.startswith("?"):
        raise BackendUnavailableError(name[1:])
    return name
