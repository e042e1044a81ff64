"""The super-resolution task: data, training, rendering, evaluation and their figures.

* ``data.py``: bundled photographs, image files, crops and downscaling for training;
* ``training.py`` / ``liif_training.py``: training FunkNN (single, continuous, factor modes) and
  the LIIF baseline on the same data;
* ``inference.py``: :func:`render` (FunkNN at any scale or size, output pixels queried at their
  centres in the ``grid_sample(align_corners=False)`` convention), :func:`render_liif`;
* ``evaluation.py``, ``metrics.py``, ``figures.py``: PSNR/SNR tables against bicubic and figures.

Imports from ``funknn_fast.ops`` and ``funknn_fast.models`` only.
"""

from funknn_fast.superres.inference import output_size, render, render_liif, render_recursive

__all__ = ["output_size", "render", "render_liif", "render_recursive"]
