"""Running the installed ``funknn`` entry point (the script next to this Python) in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FUNKNN = Path(sys.executable).with_name("funknn")


def funknn(*args: str) -> subprocess.CompletedProcess:
    """``funknn ARGS`` in a subprocess, output captured as text."""
    return subprocess.run([str(FUNKNN), *args], capture_output=True, text=True, timeout=600)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> bool:
    """Exit status 2 and a single stderr line holding every one of ``words``."""
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words)
