"""funknn_fast: fast FunkNN, continuous images from differentiable bicubic patch sampling.

The package is layered; each layer imports only from the layers below it:

* ``funknn_fast.ops``: the core op :func:`patch_sample` (shapes and the coordinate convention
  are in ``funknn_fast.ops.patch_sample``), its patch jets, the backends and the compiled-op
  glue (Triton kernels in ``funknn_fast.kernels``, C++/CUDA in ``funknn_fast._C``);
* ``funknn_fast.models``: the FunkNN model, its fused CNN evaluation, LIIF, weight files;
* tasks: ``funknn_fast.superres`` (data, training, rendering, evaluation),
  ``funknn_fast.derivatives`` (exact spatial derivatives of the network) and
  ``funknn_fast.prior`` (the continuous generative prior and its inverse problems);
* ``funknn_fast.cli``: the ``funknn`` command line.

The names users need are re-exported here (``__all__``) and imported on first use, so that
``import funknn_fast`` (and ``funknn --help``) does not import torch.
"""

__all__ = [
    "BackendUnavailableError",
    "FunkNN",
    "backends",
    "load_model",
    "patch_sample",
    "patch_sample_jets",
    "render",
]
__version__ = "0.1.0"

_LAZY = {
    "BackendUnavailableError": "funknn_fast.ops",
    "backends": "funknn_fast.ops",
    "patch_sample": "funknn_fast.ops",
    "patch_sample_jets": "funknn_fast.ops",
    "FunkNN": "funknn_fast.models.funknn",
    "load_model": "funknn_fast.models.checkpoint",
    "render": "funknn_fast.superres.inference",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'funknn_fast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
