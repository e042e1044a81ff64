"""The CUDA sources (csrc/cuda/*.cu) compile with nvcc for sm_90, without a GPU.

Compile-only (``nvcc -c``) against the headers of the installed torch wheel and csrc/, with the
flags torch's CUDAExtension and setup.py use. A CPU wheel ships ATen/cuda and c10/cuda but not the
generated c10/cuda/impl/cuda_cmake_macros.h; the test writes the one line a CUDA wheel has there.
A pass is remembered (keyed by a hash of nvcc's version, the flags, torch's version and every
source and header in csrc/) under ~/.cache/funknn_fast, so unchanged sources are not recompiled;
FUNKNN_NVCC_CHECK_NO_CACHE=1 forces the compile. Skipped only when nvcc is absent.

Also checks on the host (g++) that ``axis_taps32``, the GPU variant in patch_sample_math.h,
returns exactly what the CPU kernels' ``axis_taps`` returns.
"""

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import time

import pytest
import torch
from torch.utils import cpp_extension

ROOT = pathlib.Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
CUDA_SOURCES = sorted((CSRC / "cuda").glob("*.cu"))
CMAKE_MACROS = "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"


def find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (pathlib.Path(home) / "bin" / "nvcc").is_file():
            return str(pathlib.Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


NVCC = find_nvcc()


def nvcc_flags(stub_include: pathlib.Path) -> list[str]:
    includes = list(cpp_extension.include_paths()) + [
        str(stub_include), sysconfig.get_paths()["include"], str(CSRC)
    ]
    return (
        ["-std=c++20", "-O3", "--use_fast_math", "-gencode=arch=compute_90,code=sm_90"]
        + list(cpp_extension.COMMON_NVCC_FLAGS)
        + ["-Xcompiler", "-fPIC", "-DTORCH_EXTENSION_NAME=_C", "-DTORCH_API_INCLUDE_EXTENSION_H"]
        + [f"-I{path}" for path in includes]
    )


def cache_marker(flags: list[str], stub_include: pathlib.Path) -> pathlib.Path:
    digest = hashlib.sha256()
    flags = [flag.replace(str(stub_include), "<stub>") for flag in flags]
    digest.update(CMAKE_MACROS.encode())
    version = subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout
    digest.update(version.encode())
    digest.update(torch.__version__.encode())
    digest.update(" ".join(flags).encode())
    for path in sorted(CSRC.rglob("*")):
        if path.suffix in (".cu", ".cuh", ".h", ".hpp"):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    return base / "funknn_fast" / "nvcc_check" / digest.hexdigest()


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (no CUDA toolkit)")
def test_cuda_sources_compile_for_sm90(tmp_path):
    assert CUDA_SOURCES, "no CUDA sources in csrc/cuda"
    stub = tmp_path / "stub_include"
    macros = stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    macros.parent.mkdir(parents=True)
    macros.write_text(CMAKE_MACROS)
    flags = nvcc_flags(stub)
    marker = cache_marker(flags, stub)
    if marker.exists() and os.environ.get("FUNKNN_NVCC_CHECK_NO_CACHE") != "1":
        return  # these exact sources, headers and flags compiled before
    for source in CUDA_SOURCES:
        start = time.perf_counter()
        result = subprocess.run(
            [NVCC, "-c", str(source), "-o", str(tmp_path / (source.stem + ".o")), *flags],
            capture_output=True, text=True,
        )
        elapsed = time.perf_counter() - start
        print(f"nvcc {source.name}: {elapsed:.1f} s", file=sys.stderr)
        assert result.returncode == 0, f"nvcc failed on {source.name}:\n{result.stderr[-6000:]}"
        assert (tmp_path / (source.stem + ".o")).stat().st_size > 0
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("ok\n")


AXIS_TAPS_CHECK = r"""
#include <cmath>
#include <cstdio>
#include <limits>
#include "patch_sample_math.h"

template <typename T>
int check() {
  int failures = 0;
  const T specials[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(), T(1e13), T(-1e13), T(3.0e9),
                        T(-3.0e9), T(1073741823.5), T(-1073741825.25)};
  for (int n = 1; n <= 7; ++n) {
    for (int padding = 0; padding <= 2; ++padding) {
      for (int s = -400; s <= 400 + 9; ++s) {
        const T u = s <= 400 ? T(s) * T(0.137) - T(0.5) : specials[s - 401];
        int64_t index64[4];
        int32_t index32[4];
        bool valid64[4], valid32[4];
        T t64, t32;
        const bool in64 = funknn::axis_taps<T>(u, n, padding, index64, valid64, &t64);
        const bool in32 = funknn::axis_taps32<T>(u, n, padding, index32, valid32, &t32);
        bool same = in64 == in32 && ((t64 != t64 && t32 != t32) || t64 == t32);
        for (int k = 0; k < 4; ++k)
          same = same && index64[k] == index32[k] && valid64[k] == valid32[k];
        if (!same && failures++ < 5)
          std::printf("mismatch: u=%g n=%d padding=%d\n", double(u), n, padding);
      }
    }
  }
  return failures;
}

int main() {
  const int failures = check<float>() + check<double>();
  std::printf("%d mismatches\n", failures);
  return failures == 0 ? 0 : 1;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
def test_axis_taps32_matches_axis_taps(tmp_path):
    source = tmp_path / "axis_taps_check.cpp"
    source.write_text(AXIS_TAPS_CHECK)
    binary = tmp_path / "axis_taps_check"
    subprocess.run(
        ["g++", "-std=c++17", "-O1", f"-I{CSRC}", str(source), "-o", str(binary)], check=True
    )
    result = subprocess.run([str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
