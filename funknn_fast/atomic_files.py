"""Files written complete or not at all: through a temporary file beside the target and
``os.replace`` (atomic on POSIX within one folder).

The temporary file is ``.NAME.PID.tmp`` plus ``suffix`` (give the target's suffix when the writer
infers the format from the name) and is removed if the writer fails; the target then keeps its
previous content, or stays absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object],
                     suffix: str = "") -> None:
    """Calls ``write(tmp)`` to write a temporary file, then moves it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` (see :func:`write_atomically`)."""
    write_atomically(path, lambda tmp: tmp.write_text(text))
