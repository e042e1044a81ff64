// Shared math of funknn_fast::patch_sample_jets: per-axis jet weights of one sample, the
// accumulation of one tap row into the pixel-derivative sums, the output components, and the
// backward's coefficients. Included by the C++ CPU kernels (csrc/patch_jets.cpp) and the CUDA
// kernels (csrc/cuda/patch_jets_cuda.cu, through csrc/cuda/patch_jets_sample.cuh), so the math
// exists once. Conventions (taps, padding, NaN, 2^40 clamp) are those of patch_sample_math.h.
//
// Components of mode (normalised coordinates, chain factors s_x = W / 2 and s_y = H / 2):
//   mode 0 (K = 3): f, s_x f_x, s_y f_y
//   mode 1 (K = 4): f, s_x f_x, s_y f_y, s_x^2 f_xx + s_y^2 f_yy              (Laplacian)
//   mode 2 (K = 6): f, s_x f_x, s_y f_y, s_x^2 f_xx, s_x s_y f_xy, s_y^2 f_yy  (Hessian)
// with f_x = d f / d(pixel x) etc.
//
// Backward: with coefficients c_alpha on the pixel derivatives f_alpha of a sample (grad_jets
// times the chain factors), the contracted functional of one sample is
//   sum_{l,k} I[l][k] (wy[l] A0[k] + dwy[l] A1[k] + d2wy[l] A2[k]),
//   A0 = c_f wx + c_x dwx + c_xx d2wx,  A1 = c_y wx + c_xy dwx,  A2 = c_yy wx,
// whose image gradient is the bracket, and whose derivatives in the sample position are the same
// expression with the x (or y) weights differentiated once more (third derivatives of the Keys
// weights, constant on each cell).
#pragma once

#include <cstdint>

#include "patch_sample_math.h"

namespace funknn {

constexpr int64_t kJetsGradient = 0;
constexpr int64_t kJetsLaplacian = 1;
constexpr int64_t kJetsHessian = 2;

// Number of components K of a mode.
FUNKNN_HOST_DEVICE int jet_components(int64_t mode) {
  return mode == kJetsGradient ? 3 : (mode == kJetsLaplacian ? 4 : 6);
}

// Keys weights of one sample's four taps on one axis and their first, second and (third) third
// derivatives in the pixel position, from the fractional part t, the tap validity and the
// in-range flag of axis_taps / axis_taps32. Taps outside (zeros padding) get zero weights; past
// the clamp range all derivatives vanish; a NaN position propagates NaN into every weight,
// including the constant third derivative.
template <typename T>
FUNKNN_HOST_DEVICE void jet_axis_weights(T t, const bool* valid, bool inside, bool third, T* w,
                                         T* d1, T* d2, T* d3) {
  keys_weights<T>(t, w);
  keys_weights_d1<T>(t, d1);
  keys_weights_d2<T>(t, d2);
  if (third) {
    keys_weights_d3<T>(d3);
    for (int k = 0; k < 4; ++k) d3[k] += t - t;
  }
  for (int k = 0; k < 4; ++k) {
    if (!valid[k]) w[k] = T(0);
    if (!valid[k] || !inside) {
      d1[k] = T(0);
      d2[k] = T(0);
      if (third) d3[k] = T(0);
    }
  }
}

// The four taps and jet weights of one sample on one axis, with 32-bit indices (the GPU
// variant: axis_taps32; the CPU kernels tabulate the same weights with axis_taps).
template <typename T>
struct JetAxisSample32 {
  int32_t index[4];
  T w[4], d1[4], d2[4], d3[4];

  FUNKNN_HOST_DEVICE void fill(T u, int32_t n, int64_t padding, bool third) {
    bool valid[4];
    T t;
    const bool inside = axis_taps32<T>(u, n, padding, index, valid, &t);
    jet_axis_weights<T>(t, valid, inside, third, w, d1, d2, d3);
  }
};

// Chain factors from pixel to normalised derivatives.
template <typename T>
struct JetScales {
  T x, y, xx, xy, yy;
};

template <typename T>
FUNKNN_HOST_DEVICE JetScales<T> jet_scales(int64_t width, int64_t height) {
  const T sx = pixel_per_unit<T>(width), sy = pixel_per_unit<T>(height);
  return {sx, sy, sx * sx, sx * sy, sy * sy};
}

// Pixel-derivative sums of one sample and channel.
template <typename T>
struct JetSums {
  T f, fx, fy, fxx, fxy, fyy;
};

template <typename T>
FUNKNN_HOST_DEVICE JetSums<T> jet_sums_zero() {
  return {T(0), T(0), T(0), T(0), T(0), T(0)};
}

template <typename T>
FUNKNN_HOST_DEVICE T jet_dot4(const T* w, const T* v) {
  return w[0] * v[0] + w[1] * v[1] + w[2] * v[2] + w[3] * v[3];
}

// Adds the tap row v[0..3] (x weights wx, dwx, d2wx) with the row's y weights wy, dwy, d2wy.
template <typename T>
FUNKNN_HOST_DEVICE void jet_add_row(const T* v, const T* wx, const T* dwx, const T* d2wx, T wy,
                                    T dwy, T d2wy, bool second, JetSums<T>* s) {
  const T a = jet_dot4(wx, v), ax = jet_dot4(dwx, v);
  s->f += wy * a;
  s->fx += wy * ax;
  s->fy += dwy * a;
  if (second) {
    s->fxx += wy * jet_dot4(d2wx, v);
    s->fxy += dwy * ax;
    s->fyy += d2wy * a;
  }
}

// The K components of mode from the sums (out[0 .. K-1]).
template <typename T>
FUNKNN_HOST_DEVICE void jet_outputs(const JetSums<T>& s, const JetScales<T>& k, int64_t mode,
                                    T* out) {
  out[0] = s.f;
  out[1] = k.x * s.fx;
  out[2] = k.y * s.fy;
  if (mode == kJetsLaplacian) {
    out[3] = k.xx * s.fxx + k.yy * s.fyy;
  } else if (mode == kJetsHessian) {
    out[3] = k.xx * s.fxx;
    out[4] = k.xy * s.fxy;
    out[5] = k.yy * s.fyy;
  }
}

// Backward coefficients c_alpha of one sample and channel from its K incoming gradients g.
template <typename T>
struct JetCoefficients {
  T f, x, y, xx, xy, yy;
};

template <typename T>
FUNKNN_HOST_DEVICE JetCoefficients<T> jet_coefficients(const T* g, const JetScales<T>& k,
                                                       int64_t mode) {
  JetCoefficients<T> c{g[0], k.x * g[1], k.y * g[2], T(0), T(0), T(0)};
  if (mode == kJetsLaplacian) {
    c.xx = k.xx * g[3];
    c.yy = k.yy * g[3];
  } else if (mode == kJetsHessian) {
    c.xx = k.xx * g[3];
    c.xy = k.xy * g[4];
    c.yy = k.yy * g[5];
  }
  return c;
}

// Per-tap (x) coefficients A0, A1, A2 of the functional and, when position is set, their x
// derivatives A0x, A1x, A2x (the x weights differentiated once more).
template <typename T>
struct JetTapCoefficients {
  T a0[4], a1[4], a2[4], a0x[4], a1x[4], a2x[4];
};

template <typename T>
FUNKNN_HOST_DEVICE void jet_tap_coefficients(const JetCoefficients<T>& c, const T* wx,
                                             const T* dwx, const T* d2wx, const T* d3wx,
                                             bool position, JetTapCoefficients<T>* a) {
  for (int k = 0; k < 4; ++k) {
    a->a0[k] = c.f * wx[k] + c.x * dwx[k] + c.xx * d2wx[k];
    a->a1[k] = c.y * wx[k] + c.xy * dwx[k];
    a->a2[k] = c.yy * wx[k];
    if (position) {
      a->a0x[k] = c.f * dwx[k] + c.x * d2wx[k] + c.xx * d3wx[k];
      a->a1x[k] = c.y * dwx[k] + c.xy * d2wx[k];
      a->a2x[k] = c.yy * dwx[k];
    }
  }
}

// r0 b0 + r1 b1 + r2 b2: with row weights (wy, dwy, d2wy) and (A0, A1, A2)[k] the image-gradient
// weight of tap k; with (A0x, A1x, A2x)[k] the x-position weight; with row weights
// (dwy, d2wy, d3wy) and (A0, A1, A2)[k] the y-position weight.
template <typename T>
FUNKNN_HOST_DEVICE T jet_row_weight(T r0, T r1, T r2, T b0, T b1, T b2) {
  return r0 * b0 + r1 * b1 + r2 * b2;
}

}  // namespace funknn
