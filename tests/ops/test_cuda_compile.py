"""The CUDA sources (csrc/cuda/*.cu) compile with nvcc for sm_90, without a GPU.

Compile-only (``nvcc -c``) against the headers of the installed torch wheel and csrc/, with the
flags torch's CUDAExtension and setup.py use. A CPU wheel ships ATen/cuda and c10/cuda but not the
generated c10/cuda/impl/cuda_cmake_macros.h; the test writes the one line a CUDA wheel has there.
A pass is remembered (keyed by a hash of nvcc's version, the flags, torch's version and every
source and header in csrc/) under ~/.cache/funknn_fast, so unchanged sources are not recompiled;
FUNKNN_NVCC_CHECK_NO_CACHE=1 forces the compile. Skipped only when nvcc is absent.

Also checks on the host (g++) that ``axis_taps32``, the GPU variant in patch_sample_math.h,
returns exactly what the CPU kernels' ``axis_taps`` returns, and runs the per-thread code of the
CUDA jets kernels (csrc/cuda/patch_jets_sample.cuh: forward, backward with the atomic and the
deterministic record sinks) on the host over every (query, sample), in float32 and float64,
against the CPU op of csrc/patch_jets.cpp (all modes and paddings, knots, NaN / inf / past-the-
clamp coordinates, output masks).
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

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


# The per-thread work of the CUDA jets kernels (csrc/cuda/patch_jets_sample.cuh), run on the host
# over every (query, sample): the forward, and the backward with the atomic sink (a plain add
# here) or the deterministic record sink (chunks of queries, records summed in slot order).
JETS_HOST_HARNESS = r"""
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "patch_jets_sample.cuh"

using funknn::JetShape;

template <typename T>
std::vector<T> read(FILE* f, int64_t n) {
  std::vector<T> v(n);
  if (n > 0 && std::fread(v.data(), sizeof(T), n, f) != static_cast<size_t>(n)) std::exit(3);
  return v;
}

template <typename T>
void write(FILE* f, const std::vector<T>& v) {
  if (!v.empty()) std::fwrite(v.data(), sizeof(T), v.size(), f);
}

template <typename T>
int run(const int64_t* a, const char* in_path, const char* out_path) {
  const JetShape g{a[1], a[2], a[5], static_cast<int32_t>(a[3]), static_cast<int32_t>(a[4]),
                   static_cast<int32_t>(a[6]), a[8]};
  const int64_t padding = a[7], chunk = a[12];
  const bool need_image = a[9] != 0, need_coords = a[10] != 0, need_step = a[11] != 0;
  const bool need_position = need_coords || need_step;
  const int64_t pp = int64_t(g.p) * g.p, bqs = g.batch * g.queries;
  const int64_t k = funknn::jet_components(g.mode);
  const int64_t image_n = g.batch * g.channels * g.height * g.width;
  const int64_t jets_n = k * bqs * g.channels * pp;
  FILE* in = std::fopen(in_path, "rb");
  if (!in) return 2;
  const auto image = read<T>(in, image_n);
  const auto coords = read<T>(in, bqs * 2);
  const auto step = read<T>(in, 2);
  const auto grad_jets = read<T>(in, jets_n);
  std::fclose(in);

  std::vector<T> jets(jets_n, T(-12345));
  for (int64_t bq = 0; bq < bqs; ++bq)
    for (int32_t s = 0; s < pp; ++s) {
      if (g.mode == funknn::kJetsGradient)
        funknn::jets_forward_sample<false>(g, image.data(), coords.data(), step[0], step[1],
                                           padding, bq, s, jets.data());
      else
        funknn::jets_forward_sample<true>(g, image.data(), coords.data(), step[0], step[1],
                                          padding, bq, s, jets.data());
    }

  std::vector<T> grad_image(image_n, T(0)), grad_coords(bqs * 2, T(0)), grad_step(2, T(0));
  const int64_t taps = 16 * g.channels;
  const int64_t span = chunk > 0 ? chunk : (bqs > 0 ? bqs : 1);
  for (int64_t begin = 0; begin < bqs; begin += span) {
    const int64_t end = begin + span < bqs ? begin + span : bqs;
    const int64_t samples = (end - begin) * pp;
    std::vector<T> values;
    std::vector<int64_t> indices;
    if (chunk > 0 && need_image) {
      values.assign(samples * taps, T(0));
      indices.assign(samples * taps, -1);
    }
    funknn::JetImageSink<T> sink{grad_image.data(), values.empty() ? nullptr : values.data(),
                                 indices.empty() ? nullptr : indices.data(), samples, 0};
    for (int64_t bq = begin; bq < end; ++bq) {
      T sums[4] = {T(0), T(0), T(0), T(0)};
      for (int32_t s = 0; s < pp; ++s) {
        sink.sample = (bq - begin) * pp + s;
        funknn::jets_backward_sample(g, grad_jets.data(), image.data(), coords.data(), step[0],
                                     step[1], padding, need_image, need_position, bq, s, sink,
                                     sums);
      }
      if (need_position) {
        grad_coords[bq * 2] = sums[0] * funknn::pixel_per_unit<T>(g.width);
        grad_coords[bq * 2 + 1] = sums[1] * funknn::pixel_per_unit<T>(g.height);
        grad_step[0] += sums[2];
        grad_step[1] += sums[3];
      }
    }
    for (size_t slot = 0; slot < indices.size(); ++slot) {
      if (indices[slot] < 0 || indices[slot] >= image_n) {
        std::printf("record slot %zu not written or out of range\n", slot);
        return 4;
      }
      grad_image[indices[slot]] += values[slot];
    }
  }
  if (!need_image) grad_image.assign(image_n, T(0));
  if (!need_coords) grad_coords.assign(bqs * 2, T(0));
  if (!need_step) grad_step.assign(2, T(0));

  FILE* out = std::fopen(out_path, "wb");
  if (!out) return 2;
  write(out, jets);
  write(out, grad_image);
  write(out, grad_coords);
  write(out, grad_step);
  std::fclose(out);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 16) return 1;
  int64_t a[13];
  for (int i = 0; i < 13; ++i) a[i] = std::atoll(argv[i + 1]);
  return a[0] == 0 ? run<float>(a, argv[14], argv[15]) : run<double>(a, argv[14], argv[15]);
}
"""


@pytest.fixture(scope="module")
def jets_harness(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    directory = tmp_path_factory.mktemp("jets_harness")
    source = directory / "jets_harness.cpp"
    source.write_text(JETS_HOST_HARNESS)
    binary = directory / "jets_harness"
    subprocess.run(
        ["g++", "-std=c++17", "-O1", f"-I{CSRC}", f"-I{CSRC / 'cuda'}", str(source), "-o",
         str(binary)],
        check=True,
    )
    return binary


def run_jets_harness(binary, directory, image, coords, step, grad_jets, patch_size, padding,
                     mode, output_mask, chunk):
    """Forward jets and backward grads of the CUDA per-thread code run on the host."""
    import numpy as np

    dtype = image.dtype
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    in_path, out_path = directory / "in.bin", directory / "out.bin"
    with open(in_path, "wb") as handle:
        for tensor in (image, coords, step, grad_jets):
            handle.write(tensor.contiguous().numpy().tobytes())
    args = [0 if dtype == torch.float32 else 1, batch, channels, height, width, queries,
            patch_size, padding, mode, *(int(m) for m in output_mask), chunk]
    result = subprocess.run(
        [str(binary), *(str(a) for a in args), str(in_path), str(out_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    flat = torch.from_numpy(np.fromfile(out_path, dtype=np.float32 if dtype == torch.float32
                                        else np.float64))
    sizes = [grad_jets.numel(), image.numel(), coords.numel(), 2]
    jets, grad_image, grad_coords, grad_step = torch.split(flat, sizes)
    return (jets.reshape(grad_jets.shape), grad_image.reshape(image.shape),
            grad_coords.reshape(coords.shape), grad_step)


def jets_inputs(seed, dtype, specials):
    """Random inputs on an 8-wide image (so some samples sit exactly on knots), optionally with
    NaN, inf and past-the-clamp coordinates."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 3, 5, 8, generator=generator, dtype=torch.float64)
    coords = torch.rand(2, 6, 2, generator=generator, dtype=torch.float64) * 3.0 - 1.5
    coords[0, 1] = torch.tensor([-0.125, 0.1])  # px = 3 exactly: knots with step_x 1
    coords[1, 2] = torch.tensor([0.375, -0.6])  # px = 5, py = 0.5
    if specials:
        coords[0, 0, 0] = float("nan")
        coords[1, 1, 1] = float("inf")
        coords[1, 3, 0] = 3e12
        coords[0, 4, 1] = -float("inf")
    step = torch.tensor([1.0, 0.5], dtype=torch.float64)
    return image.to(dtype), coords.to(dtype), step.to(dtype)


def assert_same(actual, expected, tolerance):
    """Equal NaN pattern; finite values within tolerance * max(1, max |expected|)."""
    nan_expected, nan_actual = expected.isnan(), actual.isnan()
    assert torch.equal(nan_actual, nan_expected)
    finite = ~nan_expected
    scale = max(1.0, float(expected[finite].abs().max())) if finite.any() else 1.0
    torch.testing.assert_close(actual[finite], expected[finite], rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("specials", [False, True])
def test_cuda_jets_per_thread_code_matches_cpu_op(jets_harness, tmp_path, dtype, specials):
    from funknn_fast.ops.jets import OPS

    if OPS is None:
        pytest.skip("C++ extension not built")
    tolerance = 1e-12 if dtype == torch.float64 else 4e-6  # measured: 1e-15, 8e-7
    image, coords, step = jets_inputs(3 + specials, dtype, specials)
    generator = torch.Generator().manual_seed(7)
    cases = [(p, padding, mode) for padding in (0, 1, 2) for mode in (0, 1, 2) for p in (3, 4)]
    cases.append((1, 2, 2))
    for index, (p, padding, mode) in enumerate(cases):
        # The CPU op in float64 on the same (rounded) inputs is the oracle.
        expected_jets = OPS.patch_sample_jets(image.double(), coords.double(), step.double(), p,
                                              padding, mode)
        grad_jets = torch.randn(expected_jets.shape, generator=generator, dtype=torch.float64)
        grad_jets = grad_jets.to(dtype).double()
        mask = [[True, True, True], [False, True, False], [True, False, True]][index % 3]
        expected = OPS.patch_sample_jets_backward(
            grad_jets, image.double(), coords.double(), step.double(), p, padding, mode, mask
        )
        chunk = 0 if index % 2 == 0 else 5  # atomics; or records in chunks of 5 queries
        jets, *grads = run_jets_harness(jets_harness, tmp_path, image, coords, step,
                                        grad_jets.to(dtype), p, padding, mode, mask, chunk)
        where = f"p={p} padding={padding} mode={mode} mask={mask} chunk={chunk}"
        try:
            assert_same(jets.double(), expected_jets, tolerance)
            for actual, wanted in zip(grads, expected, strict=True):
                assert_same(actual.double(), wanted, tolerance * 4)
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None
