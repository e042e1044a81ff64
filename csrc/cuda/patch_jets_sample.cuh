// Per-thread work of the CUDA jets kernels (csrc/cuda/patch_jets_cuda.cu): the forward and the
// backward of one (query, sample) pair over all channels. Host-and-device code with no CUDA
// runtime dependency, so tests/test_cuda_compile.py also compiles it with g++ and runs it on the
// host over every (query, sample), checking it against the CPU op (csrc/patch_jets.cpp) -- the
// device kernels add only the thread layout, the atomics and the reductions.
//
// Layouts: image (B, C, H, W) contiguous, coords (B, Q, 2) and step (2,) in the accumulation
// type T (float for float16 / bfloat16 / float32 images, double for float64), jets and grad_jets
// (K, B, Q, C, p, p) in the image type. Sample s = i * p + j of query bq sits at pixel position
// (px + (j - (p-1)/2) step_x, py + (i - (p-1)/2) step_y).
#pragma once

#include <cstdint>

#include "patch_jets_math.h"
#include "patch_sample_math.h"

namespace funknn {

struct JetShape {
  int64_t batch, channels, queries;
  int32_t height, width, p;
  int64_t mode;
};

template <typename T>
FUNKNN_HOST_DEVICE T jet_sample_offset(int32_t s, int32_t p) {
  return static_cast<T>(s) - static_cast<T>(p - 1) / T(2);
}

template <typename T, typename scalar_t>
FUNKNN_HOST_DEVICE T jet_load(const scalar_t* ptr) {
  return static_cast<T>(*ptr);
}

// The x and y jet weights and taps of sample s of query bq (third: third derivatives too).
template <typename T>
FUNKNN_HOST_DEVICE void jet_sample_axes(const JetShape& g, const T* coords, T step_x, T step_y,
                                        int64_t padding, int64_t bq, int32_t s, bool third,
                                        JetAxisSample32<T>* xs, JetAxisSample32<T>* ys) {
  const int32_t i = s / g.p, j = s - i * g.p;
  xs->fill(normalized_to_pixel<T>(coords[bq * 2], g.width) +
               jet_sample_offset<T>(j, g.p) * step_x,
           g.width, padding, third);
  ys->fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height) +
               jet_sample_offset<T>(i, g.p) * step_y,
           g.height, padding, third);
}

// Image-gradient sink of jets_backward_sample: atomicAdd into grad_image (a plain add on the
// host), or, when values != nullptr (deterministic mode), a record of the contribution and its
// image index at slot tap * samples + sample, summed later in slot order.
template <typename T>
struct JetImageSink {
  T* grad_image;
  T* values;
  int64_t* indices;
  int64_t samples;  // samples of the launch (queries * p * p): the record stride of one tap
  int64_t sample;   // the current sample within the launch

  FUNKNN_HOST_DEVICE void operator()(int64_t tap, int64_t index, T value) const {
    if (values != nullptr) {
      const int64_t slot = tap * samples + sample;
      values[slot] = value;
      indices[slot] = index;
    } else {
#ifdef __CUDA_ARCH__
      atomicAdd(grad_image + index, value);
#else
      grad_image[index] += value;
#endif
    }
  }
};

// Forward of sample s of query bq: all K components of every channel, written to out.
// kSecond: mode != gradient (second-derivative sums needed).
template <bool kSecond, typename scalar_t, typename T>
FUNKNN_HOST_DEVICE void jets_forward_sample(const JetShape& g, const scalar_t* image,
                                            const T* coords, T step_x, T step_y,
                                            int64_t padding, int64_t bq, int32_t s,
                                            scalar_t* out) {
  const int64_t pp = static_cast<int64_t>(g.p) * g.p;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t component_stride = g.batch * g.queries * g.channels * pp;
  const int components = jet_components(g.mode);
  const JetScales<T> scales = jet_scales<T>(g.width, g.height);
  const int64_t b = bq / g.queries;
  JetAxisSample32<T> xs, ys;
  jet_sample_axes(g, coords, step_x, step_y, padding, bq, s, false, &xs, &ys);
  for (int64_t c = 0; c < g.channels; ++c) {
    const scalar_t* src = image + (b * g.channels + c) * plane;
    JetSums<T> sums = jet_sums_zero<T>();
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const scalar_t* row = src + static_cast<int64_t>(ys.index[l]) * g.width;
      T v[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) v[k] = jet_load<T>(row + xs.index[k]);
      jet_add_row(v, xs.w, xs.d1, xs.d2, ys.w[l], ys.d1[l], ys.d2[l], kSecond, &sums);
    }
    T values[6];
    jet_outputs(sums, scales, g.mode, values);
    scalar_t* dst = out + (bq * g.channels + c) * pp + s;
#pragma unroll
    for (int k = 0; k < 6; ++k)
      if (k < components) dst[k * component_stride] = static_cast<scalar_t>(values[k]);
  }
}

// Backward of sample s of query bq over all channels. When need_image, calls
// sink(tap, index, value) (Sink: JetImageSink) for each of the 16 C image-gradient
// contributions (tap = c * 16 + l * 4 + k, index into the flat image). When need_position, adds
// the sample's derivatives in its x / y pixel position to sums[0] / sums[1] and their step parts
// (times the sample's offset) to sums[2] / sums[3].
template <typename scalar_t, typename T, typename Sink>
FUNKNN_HOST_DEVICE void jets_backward_sample(const JetShape& g, const scalar_t* grad_jets,
                                             const scalar_t* image, const T* coords, T step_x,
                                             T step_y, int64_t padding, bool need_image,
                                             bool need_position, int64_t bq, int32_t s,
                                             Sink& sink, T* sums) {
  const int64_t pp = static_cast<int64_t>(g.p) * g.p;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t component_stride = g.batch * g.queries * g.channels * pp;
  const int components = jet_components(g.mode);
  const JetScales<T> scales = jet_scales<T>(g.width, g.height);
  const int64_t b = bq / g.queries;
  JetAxisSample32<T> xs, ys;
  jet_sample_axes(g, coords, step_x, step_y, padding, bq, s, need_position, &xs, &ys);
  T hx = T(0), hy = T(0);
  for (int64_t c = 0; c < g.channels; ++c) {
    const int64_t plane_start = (b * g.channels + c) * plane;
    const scalar_t* go = grad_jets + (bq * g.channels + c) * pp + s;
    T incoming[6];
#pragma unroll
    for (int k = 0; k < 6; ++k)
      incoming[k] = k < components ? jet_load<T>(go + k * component_stride) : T(0);
    const JetCoefficients<T> coef = jet_coefficients(incoming, scales, g.mode);
    JetTapCoefficients<T> a;
    jet_tap_coefficients(coef, xs.w, xs.d1, xs.d2, xs.d3, need_position, &a);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const int64_t row_start = plane_start + static_cast<int64_t>(ys.index[l]) * g.width;
      if (need_position) {
        T v[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = jet_load<T>(image + row_start + xs.index[k]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          hx += v[k] * jet_row_weight(ys.w[l], ys.d1[l], ys.d2[l], a.a0x[k], a.a1x[k], a.a2x[k]);
          hy += v[k] * jet_row_weight(ys.d1[l], ys.d2[l], ys.d3[l], a.a0[k], a.a1[k], a.a2[k]);
        }
      }
      if (need_image) {
#pragma unroll
        for (int k = 0; k < 4; ++k)
          sink(c * 16 + l * 4 + k, row_start + xs.index[k],
               jet_row_weight(ys.w[l], ys.d1[l], ys.d2[l], a.a0[k], a.a1[k], a.a2[k]));
      }
    }
  }
  const int32_t i = s / g.p, j = s - i * g.p;
  sums[0] += hx;
  sums[1] += hy;
  sums[2] += hx * jet_sample_offset<T>(j, g.p);
  sums[3] += hy * jet_sample_offset<T>(i, g.p);
}

}  // namespace funknn
