"""Subcommands of the ``funknn`` command line, one module each."""
