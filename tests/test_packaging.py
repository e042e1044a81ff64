"""The sdist holds every file needed to build the package, and nothing compiled.

Its file list must cover ``git ls-files csrc kernels funknn_fast`` (an sdist without
``csrc/*.h`` cannot compile the extension) plus the build files; files it holds beyond those may
only be untracked, non-ignored files of this working tree (not in a fresh clone). The wheel
built from it is installed and run outside the tree by ``make package-check``
(``scripts/check_package.sh``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in"}


def git_files(*options: str, paths: tuple[str, ...] = ("csrc", "kernels", "funknn_fast")
              ) -> set[str]:
    result = subprocess.run(["git", "ls-files", *options, *paths], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return set(result.stdout.split())


def test_sdist_contents(tmp_path):
    # build from a copy holding what a clone holds (no egg-info left by earlier builds)
    source = tmp_path / "source"
    for name in git_files("--cached", "--others", "--exclude-standard", paths=()):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as sdist:
        files = {member.name.split("/", 1)[1] for member in sdist.getmembers()
                 if member.isfile() and "/" in member.name}
    tracked = git_files()
    assert tracked | BUILD_FILES <= files, sorted((tracked | BUILD_FILES) - files)
    extra = {f for f in files - tracked - BUILD_FILES
             if f.split("/")[0] in ("csrc", "kernels", "funknn_fast")}
    assert extra <= git_files("--others", "--exclude-standard"), sorted(extra)
    assert not [f for f in files if f.endswith((".so", ".pyd")) or "_build_info" in f]
