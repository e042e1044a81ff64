"""Optional dependencies: which ``pip install funknn_fast[EXTRA]`` provides a missing module.

``pip install funknn_fast`` pulls torch, numpy, safetensors, pillow and tqdm only; the
generative prior (``prior``: zuko, scipy, matplotlib), figures (``figures``: matplotlib) and the
bundled photographs of other packages (``data``: scikit-image, scikit-learn, matplotlib) are
extras. :func:`require` imports a module or raises ``MissingExtraError`` with the install line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> (distribution, extra)
EXTRAS: dict[str, tuple[str, str]] = {
    "zuko": ("zuko", "prior"),
    "scipy": ("scipy", "prior"),
    "matplotlib": ("matplotlib", "figures"),
    "skimage": ("scikit-image", "data"),
    "sklearn": ("scikit-learn", "data"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed (the message says which extra provides it)."""


def install_hint(module: str) -> str | None:
    """'needs X: pip install "funknn_fast[extra]"' for a known optional module, else None."""
    known = EXTRAS.get(module.split(".")[0])
    if known is None:
        return None
    distribution, extra = known
    return f'this needs {distribution}: pip install "funknn_fast[{extra}]"'


def require(module: str) -> ModuleType:
    """``importlib.import_module(module)``, or MissingExtraError naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        hint = install_hint(error.name or module)
        if hint is None:
            raise
        raise MissingExtraError(hint, name=error.name) from error
