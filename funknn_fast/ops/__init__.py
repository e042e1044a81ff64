"""The op layer: Keys-cubic patch sampling, its patch jets, backends and compiled-op glue.

* :func:`patch_sample` (``ops/patch_sample.py``): image (B, C, H, W), coords (B, Q, 2) in the
  ``F.grid_sample(align_corners=False)`` convention -> patches (B, Q, C, p, p);
* :func:`patch_sample_jets` (``ops/jets.py``): the patches and their coordinate derivatives;
* :func:`backends` (``ops/backends.py``): which backends (torch, cpu, cuda, triton) can run here;
* ``reference.py`` (the pure-PyTorch oracle), ``padding.py`` (padding codes), ``_extension.py``,
  ``cpp_ops.py`` and ``op_autograd.py`` (loading, ``torch.library`` registration and autograd of
  the compiled ops). The Triton kernels are ``funknn_fast.kernels``.

Nothing here imports from ``funknn_fast.models`` or the task layers.
"""

from funknn_fast.ops.backends import BackendUnavailableError, backends
from funknn_fast.ops.jets import patch_sample_jets
from funknn_fast.ops.patch_sample import patch_sample

__all__ = ["BackendUnavailableError", "backends", "patch_sample", "patch_sample_jets"]
