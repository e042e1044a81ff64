"""The ``funknn`` command line: one subcommand per module of ``funknn_fast.cli``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the parser default. Only the command being run is registered in full;
the others are listed by the first line of their module docstring, so ``funknn --help`` and
``funknn --version`` import neither torch nor the command modules' dependencies.

Exit status: 0 on success; 2 for a user error (argparse errors, and ``CommandError``: a missing or
corrupt file, a bad option value), printed as one line ``funknn <command>: error: ...`` on stderr;
130 after Ctrl-C, with one line ``funknn <command>: interrupted``; a missing optional
dependency is a user error that names the pip extra (``funknn_fast.extras``). Options shared by
the commands (``--device``, ``--threads``, ``--quiet``, output checks) live in
``funknn_fast.cli.common``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from funknn_fast.extras import install_hint

# command name -> module of funknn_fast.cli, in the order of ``funknn --help``
COMMANDS: dict[str, str] = {
    "superres": "superres",
    "derivatives": "derivatives",
    "eval": "evaluate",
    "train": "train",
    "train-liif": "train_liif",
    "sample": "sample",
    "solve": "solve",
}


class CommandError(Exception):
    """A user error: printed without a traceback."""


def plain(text: str) -> str:
    """``text`` without reStructuredText markup (double backquotes), for help strings."""
    return re.sub(r"``(.*?)``", r"\1", text)


def summary(module_name: str) -> str:
    """One-line help of a command: its module docstring's first line after the colon."""
    module = importlib.import_module(f"funknn_fast.cli.{module_name}")
    first = (module.__doc__ or "").strip().splitlines()[0]
    return plain(first.split(":", 1)[-1].strip()).rstrip(".")


class PlainHelpParser(argparse.ArgumentParser):
    """An ArgumentParser whose help and usage carry no reStructuredText markup."""

    def format_help(self) -> str:
        return plain(super().format_help())


def _requested_command(argv: list[str]) -> str | None:
    """The command named on the command line (the top-level options take no values)."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the command named in ``argv`` (all when ``argv`` is None) in full."""
    from funknn_fast import __version__

    parser = PlainHelpParser(
        prog="funknn",
        description="FunkNN continuous images: super-resolution, derivatives, priors.",
    )
    parser.add_argument("--version", action="version", version=f"funknn_fast {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=PlainHelpParser)
    requested = _requested_command(argv) if argv is not None else None
    for name, module_name in COMMANDS.items():
        if argv is None or name == requested:
            importlib.import_module(f"funknn_fast.cli.{module_name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary(module_name), add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _requested_command(argv) or "funknn"
    label = "funknn" if command == "funknn" else f"funknn {command}"
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"{label}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        hint = install_hint(error.name or "")
        if hint is None:
            raise
        print(f"{label}: error: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
