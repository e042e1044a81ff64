#!/usr/bin/env bash
# Copies a pure-Python pytest (pytest, _pytest, pluggy, iniconfig, packaging, pygments) from this
# machine's Python into build/gpu_check_site, for a GPU machine that has no pytest and no network:
# benchmarks/gpu_check.sh puts that folder on PYTHONPATH when `import pytest` fails there (carry
# build/gpu_check_site along). pytest 8+ needs Python >= 3.10 there (and, on 3.10, exceptiongroup
# and tomli, copied too when this Python has them).
#
# Usage: benchmarks/gpu_pack_pytest.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${1:-$ROOT/.venv/bin/python}
[[ -x "$PYTHON" ]] || PYTHON=python3
TARGET="$ROOT/build/gpu_check_site"
rm -rf "$TARGET"
mkdir -p "$TARGET"
"$PYTHON" - "$TARGET" <<'PY'
import importlib
import pathlib
import shutil
import sys

target = pathlib.Path(sys.argv[1])
for name in ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py",
             "exceptiongroup", "tomli"):
    try:
        module = importlib.import_module(name)
    except ImportError:
        continue
    path = pathlib.Path(module.__file__)
    if path.name == "__init__.py":
        shutil.copytree(path.parent, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(path, target / path.name)
    print(f"{name}: {getattr(module, '__version__', '')}")
PY
du -sh "$TARGET"
