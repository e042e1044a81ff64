"""The model layer: FunkNN (and its fused CNN evaluation), the LIIF baseline, weight files.

* :class:`FunkNN` (``models/funknn.py``): ``model(coords (B, Q, 2), image (B, C, h, w)) ->
  (B, Q, C)``, coordinates in the ``grid_sample(align_corners=False)`` convention;
* ``fused_cnn.py``: the same per-patch CNN evaluated channels-last in fewer passes;
* :class:`LIIF` (``models/liif.py``): the LIIF-EDSR baseline;
* ``checkpoint.py``: FunkNN weights as safetensors + JSON (:func:`load_model`, :func:`save_model`).

Models import only from ``funknn_fast.ops``.
"""

from funknn_fast.models.checkpoint import load_model, save_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.liif import LIIF, LIIFConfig, load_liif, save_liif

__all__ = ["LIIF", "FunkNN", "LIIFConfig", "load_liif", "load_model", "save_liif", "save_model"]
