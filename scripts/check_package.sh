#!/usr/bin/env bash
# CI packaging check (run by `make test`): build the sdist and, from it, the wheel (so the sdist
# is known to compile); install the wheel outside the source tree and run the demo there on a
# small crop; check that this copy is the one that ran, that its _C loaded and is stripped.
# The sdist's file list is checked by tests/test_packaging.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, venv link kept
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m build --no-isolation --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; exit 1; }
if grep -i "is absent from the" "$WORK/build.log"; then  # a data folder not declared a package
  exit 1
fi
"$PY" -m pip install --quiet --no-deps --no-build-isolation --target "$WORK/site" \
  "$WORK"/dist/*.whl
cd "$WORK"
# python -S: no site initialisation, so the source tree's editable install (a .pth finder) is
# not active; the wheel's copy comes first, the venv's packages (torch, ...) after it.
PURELIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
export PYTHONPATH="$WORK/site:$PURELIB"
"$PY" -S - "$WORK/site" <<'PYCHECK'
import importlib.metadata
import pathlib
import re
import sys

import funknn_fast
from funknn_fast.ops import backends

site = pathlib.Path(sys.argv[1])
assert pathlib.Path(funknn_fast.__file__).is_relative_to(site), funknn_fast.__file__
assert backends()["cpu"].available, backends()["cpu"].reason
extension = pathlib.Path(sys.modules["funknn_fast._C"].__file__)
assert extension.is_relative_to(site), extension
assert b".debug_info" not in extension.read_bytes(), f"{extension} is not stripped"
(dist,) = importlib.metadata.distributions(path=[str(site)])
base = {re.split(r"[<>=;\[ ]", r)[0]: r for r in dist.requires if "extra ==" not in r}
assert set(base) == {"torch", "numpy", "pillow", "safetensors", "tqdm"}, base
assert "<" in base["torch"], f"{base['torch']}: no upper bound for the torch _C was built for"
print(f"wheel install OK: {funknn_fast.__file__}, _C {extension.stat().st_size} bytes, "
      f"requires {sorted(base.values())}")
PYCHECK
"$PY" -S "$WORK/site/bin/funknn" superres --demo -o "$WORK/demo" --demo-crop 56 --quiet
test -s "$WORK/demo/superres_demo.png"
