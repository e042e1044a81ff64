"""The ``funknn`` command line: one subcommand per module of ``funknn_fast.cli``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. Errors a user can fix (missing files, bad sizes)
are raised as ``CommandError`` and printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
    "sample", "solve", "train_liif", "derivatives", "train", "superres", "evaluate"
]


class CommandError(Exception):
    """A user error: printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funknn",
        description="FunkNN continuous images: super-resolution, derivatives, priors.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"funknn_fast.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"funknn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
