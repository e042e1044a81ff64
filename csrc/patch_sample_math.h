// Shared math of the patch-sampling op: Keys cubic weights (a = -0.5) and their
// derivatives, tap-index padding and the coordinate convention. Included by the C++ CPU
// kernels (csrc/patch_sample_cpu.cpp) and the CUDA kernels (csrc/cuda/), so the math exists
// once.
//
// Conventions (see funknn_fast/patch_sample.py for the full contract):
//   * normalised coordinate x in the grid_sample convention with align_corners=False maps to
//     the pixel position u = ((x + 1) * size - 1) / 2, pixel k covering [k - 0.5, k + 0.5);
//   * an interpolant at position u reads the taps floor(u) - 1 .. floor(u) + 2 with weights
//     w_k(t), t = u - floor(u) in [0, 1);
//   * non-finite positions give NaN weights (the sample is NaN) and read tap 0 only;
//   * positions are clamped to [-kMaxPosition, kMaxPosition] pixels (derivatives vanish past it).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FUNKNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FUNKNN_HOST_DEVICE inline
#endif

namespace funknn {

enum Padding : int64_t { kZeros = 0, kBorder = 1, kReflection = 2 };

constexpr double kMaxPosition = 1099511627776.0;  // 2^40 pixels

// Pixel position of a normalised coordinate (align_corners=False).
template <typename T>
FUNKNN_HOST_DEVICE T normalized_to_pixel(T x, int64_t size) {
  return ((x + T(1)) * static_cast<T>(size) - T(1)) * T(0.5);
}

// d(pixel position) / d(normalised coordinate).
template <typename T>
FUNKNN_HOST_DEVICE T pixel_per_unit(int64_t size) {
  return static_cast<T>(size) * T(0.5);
}

// Keys cubic convolution weights (a = -0.5) of the taps floor(u) - 1 .. floor(u) + 2.
template <typename T>
FUNKNN_HOST_DEVICE void keys_weights(T t, T* w) {
  const T t2 = t * t;
  const T t3 = t2 * t;
  w[0] = T(0.5) * (-t3 + T(2) * t2 - t);
  w[1] = T(0.5) * (T(3) * t3 - T(5) * t2 + T(2));
  w[2] = T(0.5) * (T(-3) * t3 + T(4) * t2 + t);
  w[3] = T(0.5) * (t3 - t2);
}

// d w_k / dt.
template <typename T>
FUNKNN_HOST_DEVICE void keys_weights_d1(T t, T* w) {
  const T t2 = t * t;
  w[0] = T(0.5) * (T(-3) * t2 + T(4) * t - T(1));
  w[1] = T(0.5) * (T(9) * t2 - T(10) * t);
  w[2] = T(0.5) * (T(-9) * t2 + T(8) * t + T(1));
  w[3] = T(0.5) * (T(3) * t2 - T(2) * t);
}

// d^2 w_k / dt^2.
template <typename T>
FUNKNN_HOST_DEVICE void keys_weights_d2(T t, T* w) {
  w[0] = T(-3) * t + T(2);
  w[1] = T(9) * t - T(5);
  w[2] = T(-9) * t + T(4);
  w[3] = T(3) * t - T(1);
}

// d^3 w_k / dt^3 (constant on each cell).
template <typename T>
FUNKNN_HOST_DEVICE void keys_weights_d3(T* w) {
  w[0] = T(-3);
  w[1] = T(9);
  w[2] = T(-9);
  w[3] = T(3);
}

// Maps a tap index of an axis of length n into [0, n). Returns false when the tap lies outside
// and padding is zeros (the caller then weights it by 0 and reads index 0).
FUNKNN_HOST_DEVICE bool pad_index(int64_t i, int64_t n, int64_t padding, int64_t* out) {
  if (i >= 0 && i < n) {
    *out = i;
    return true;
  }
  if (padding == kBorder) {
    *out = i < 0 ? 0 : n - 1;
    return true;
  }
  if (padding == kReflection) {
    // Half-sample symmetric: -1 -> 0, n -> n - 1, period 2n.
    const int64_t period = 2 * n;
    int64_t m = i % period;
    if (m < 0) m += period;
    *out = m >= n ? period - 1 - m : m;
    return true;
  }
  *out = 0;
  return false;
}

// The four taps of position u on an axis of length n: padded indices, a validity mask (false
// only for zeros padding) and the fractional part t. Returns false when u is past the clamp
// range (its derivatives are then zero).
template <typename T>
FUNKNN_HOST_DEVICE bool axis_taps(T u, int64_t n, int64_t padding, int64_t* index, bool* valid,
                                  T* t) {
  if (!(u == u) || u - u != T(0)) {  // NaN or +-inf
    *t = u - u;                      // NaN
    for (int k = 0; k < 4; ++k) {
      index[k] = 0;
      valid[k] = true;
    }
    return true;
  }
  bool inside = true;
  if (u > T(kMaxPosition)) {
    u = T(kMaxPosition);
    inside = false;
  } else if (u < T(-kMaxPosition)) {
    u = T(-kMaxPosition);
    inside = false;
  }
  const T base = floor(u);
  *t = u - base;
  const int64_t first = static_cast<int64_t>(base) - 1;
  for (int k = 0; k < 4; ++k) valid[k] = pad_index(first + k, n, padding, &index[k]);
  return inside;
}

// GPU variant of axis_taps: the same taps, validity, fractional part and return value, with
// 32-bit indices and at most one modulo per position (reflection wraps the 4 consecutive taps
// incrementally; positions within +-2^30 use a 32-bit modulo). n must be below 2^30.
template <typename T>
FUNKNN_HOST_DEVICE bool axis_taps32(T u, int32_t n, int64_t padding, int32_t* index,
                                    bool* valid, T* t) {
  if (!(u == u) || u - u != T(0)) {  // NaN or +-inf
    *t = u - u;                      // NaN
    for (int k = 0; k < 4; ++k) {
      index[k] = 0;
      valid[k] = true;
    }
    return true;
  }
  bool inside = true;
  if (u > T(kMaxPosition)) {
    u = T(kMaxPosition);
    inside = false;
  } else if (u < T(-kMaxPosition)) {
    u = T(-kMaxPosition);
    inside = false;
  }
  const T base = floor(u);
  *t = u - base;
  const int64_t first = static_cast<int64_t>(base) - 1;
  if (padding == kReflection) {
    const int32_t period = 2 * n;
    int32_t m;
    if (first >= -(int64_t(1) << 30) && first <= (int64_t(1) << 30)) {
      m = static_cast<int32_t>(first) % period;
    } else {
      m = static_cast<int32_t>(first % period);
    }
    if (m < 0) m += period;
    for (int k = 0; k < 4; ++k) {
      index[k] = m >= n ? period - 1 - m : m;
      valid[k] = true;
      m = m + 1 == period ? 0 : m + 1;
    }
    return inside;
  }
  const int32_t f = static_cast<int32_t>(first < -8 ? -8 : (first > n + 8 ? n + 8 : first));
  for (int k = 0; k < 4; ++k) {
    const int32_t i = f + k;
    if (padding == kBorder) {
      index[k] = i < 0 ? 0 : (i >= n ? n - 1 : i);
      valid[k] = true;
    } else {
      valid[k] = i >= 0 && i < n;
      index[k] = valid[k] ? i : 0;
    }
  }
  return inside;
}

}  // namespace funknn
