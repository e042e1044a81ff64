"""funknn_fast: fast FunkNN, continuous images from differentiable bicubic patch sampling.

The core op is :func:`patch_sample` (see ``funknn_fast.patch_sample`` for shapes and the
coordinate convention); :func:`backends` says which implementations this install can run.
"""

from funknn_fast.backends import BackendUnavailableError, backends
from funknn_fast.patch_sample import patch_sample

__all__ = ["BackendUnavailableError", "backends", "patch_sample"]
__version__ = "0.1.0"
