"""Options and checks shared by the ``funknn`` commands: one vocabulary for all of them.

* ``-o/--output``: what a command writes (a file or a folder); missing parent folders are
  created, and the folder is checked for writability before any work (:func:`output_file`,
  :func:`output_folder`);
* ``--device {auto,cpu,cuda}`` (auto: CUDA when available) and ``--dtype`` where the computation
  may run in another precision (:func:`add_device_options`, :func:`device_of`, :func:`dtype_of`);
* ``--threads N`` (torch CPU threads) and ``--quiet`` (no progress bars).

Nothing here imports torch at module level (``funknn --help`` stays fast).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from funknn_fast.cli import CommandError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64", "float16", "bfloat16")


def add_device_options(parser: argparse.ArgumentParser, dtype: bool = False) -> None:
    """``--device`` (and ``--dtype`` when ``dtype``)."""
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where to compute: auto (CUDA when available), cpu or cuda")
    if dtype:
        parser.add_argument("--dtype", choices=DTYPES, default="float32",
                            help="floating-point type of the model and image (default float32)")


def add_run_options(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    """``--threads`` and, when the command shows progress bars, ``--quiet``."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    if progress:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")


def apply_threads(args: argparse.Namespace) -> None:
    """Sets torch's CPU threads from ``--threads`` (checked >= 1)."""
    if args.threads is None:
        return
    if args.threads < 1:
        raise CommandError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)


def device_of(args: argparse.Namespace):
    """The torch.device of ``--device``; an error when CUDA is asked for and absent."""
    import torch

    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda: no CUDA device is available to this torch "
                           f"({torch.__version__})")
    return torch.device(args.device)


def dtype_of(args: argparse.Namespace):
    """The torch dtype of ``--dtype``."""
    import torch

    return getattr(torch, args.dtype)


def _check_writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".funknn-probe-"):
            pass
    except OSError as error:
        raise CommandError(f"{option}: cannot write in {folder}: {error.strerror or error}"
                           ) from error


def output_folder(path: str | os.PathLike, option: str = "-o/--output") -> Path:
    """``path`` as an output folder: created if missing, checked writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option}: {path} exists and is not a folder")
    _check_writable(path, option)
    return path


def output_file(path: str | os.PathLike, suffixes: tuple[str, ...],
                option: str = "-o/--output") -> Path:
    """``path`` as an output file with one of ``suffixes``: its folder created and writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise CommandError(f"{option} must end in {', '.join(suffixes)}, got {path.name}")
    if path.is_dir():
        raise CommandError(f"{option}: {path} is a folder")
    _check_writable(path.parent, option)
    return path
