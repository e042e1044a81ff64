// CUDA kernels of funknn_fast::patch_sample, patch_sample_backward and
// patch_sample_double_backward (schemas in csrc/patch_sample.cpp). The math (Keys weights and
// their derivatives, padding, coordinate convention) comes from patch_sample_math.h, shared with
// the CPU kernels; the three passes follow the comments of csrc/patch_sample.cpp.
//
//   * forward: one thread per (query, sample); x and y weights and taps in registers, a loop over
//     channels, 16 reads per channel through the read-only cache; coalesced writes.
//   * backward / double backward: a block of QPB x TPQ threads handles QPB queries, TPQ threads
//     (a multiple of 32) sharing the p * p samples of one query. Coordinate gradients are reduced
//     per query (warp shuffles, then shared memory in a fixed order) and the step gradient gets one
//     partial sum per block, summed afterwards: both are deterministic. The image gradient uses
//     atomicAdd into an fp32 (fp64 for float64) buffer: under
//     torch.use_deterministic_algorithms(True) these ops raise (the Triton backend has a
//     deterministic mode).
//
// dtypes: float32 and float64 images with coords/step of the same dtype; float16 / bfloat16
// images with float32 coords and step. Weights and sums use at::opmath_type
// (float, double for float64); results are in the image dtype, coordinate and step gradients in
// the dtype of coords and step.
// Per-operator headers instead of <ATen/ATen.h> keep the compile short.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>

#include "block_reduce.cuh"
#include "patch_sample_math.h"

namespace funknn {
namespace {

constexpr int kForwardThreads = 256;
constexpr int kBlockThreads = 256;
constexpr int kMaxWarpsPerQuery = kBlockThreads / 32;

// The four taps of one sample on one axis: indices, weights and (order >= 1, 2) derivatives.
template <typename T>
struct AxisSample {
  int32_t index[4];
  T w[4], d1[4], d2[4];

  __device__ __forceinline__ void fill(T u, int32_t n, int64_t padding, int order) {
    bool valid[4];
    T t;
    const bool inside = axis_taps32<T>(u, n, padding, index, valid, &t);
    keys_weights<T>(t, w);
    if (order >= 1) keys_weights_d1<T>(t, d1);
    if (order >= 2) keys_weights_d2<T>(t, d2);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (!valid[k]) w[k] = T(0);
      if (order >= 1 && (!valid[k] || !inside)) d1[k] = T(0);
      if (order >= 2 && (!valid[k] || !inside)) d2[k] = T(0);
    }
  }
};

template <typename T>
__device__ __forceinline__ T sample_offset(int32_t s, int32_t p) {
  return static_cast<T>(s) - static_cast<T>(p - 1) / T(2);
}

template <typename scalar_t, typename T>
__device__ __forceinline__ T load(const scalar_t* __restrict__ ptr) {
  return static_cast<T>(*ptr);
}

template <typename T>
__device__ __forceinline__ T dot4(const T* w, const T* a) {
  return w[0] * a[0] + w[1] * a[1] + w[2] * a[2] + w[3] * a[3];
}

struct Shape {
  int64_t batch, channels, queries;
  int32_t height, width, p;
};

// ---------------------------------------------------------------- forward

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kForwardThreads)
    forward_kernel(Shape g, const scalar_t* __restrict__ image, const T* __restrict__ coords,
                   const T* __restrict__ step, scalar_t* __restrict__ out, int64_t padding) {
  const int64_t pp = static_cast<int64_t>(g.p) * g.p;
  const int64_t total = g.batch * g.queries * pp;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const T sx = step[0], sy = step[1];
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bq = e / pp;
    const int32_t s = static_cast<int32_t>(e - bq * pp);
    const int32_t i = s / g.p, j = s - (s / g.p) * g.p;
    const int64_t b = bq / g.queries;
    AxisSample<T> xs, ys;
    xs.fill(normalized_to_pixel<T>(coords[bq * 2], g.width) + sample_offset<T>(j, g.p) * sx,
            g.width, padding, 0);
    ys.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height) + sample_offset<T>(i, g.p) * sy,
            g.height, padding, 0);
    for (int64_t c = 0; c < g.channels; ++c) {
      const scalar_t* src = image + (b * g.channels + c) * plane;
      T acc = T(0);
#pragma unroll
      for (int l = 0; l < 4; ++l) {
        const scalar_t* row = src + static_cast<int64_t>(ys.index[l]) * g.width;
        T taps[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) taps[k] = load<scalar_t, T>(row + xs.index[k]);
        acc += ys.w[l] * dot4(xs.w, taps);
      }
      out[(bq * g.channels + c) * pp + s] = static_cast<scalar_t>(acc);
    }
  }
}

// ---------------------------------------------------------------- backward

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kBlockThreads)
    backward_kernel(Shape g, const scalar_t* __restrict__ grad_out,
                    const scalar_t* __restrict__ image, const T* __restrict__ coords,
                    const T* __restrict__ step, int64_t padding, bool need_image, bool need_pos,
                    T* __restrict__ grad_image, T* __restrict__ grad_coords,
                    T* __restrict__ step_partials) {
  __shared__ T query_sums[kMaxWarpsPerQuery][2];
  const int32_t pp = g.p * g.p;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t bq = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool active = bq < g.batch * g.queries;
  const T sx = step[0], sy = step[1];
  T sums[4] = {T(0), T(0), T(0), T(0)};  // d/dpx, d/dpy, d/dstep_x, d/dstep_y
  if (active) {
    const int64_t b = bq / g.queries;
    const T cx = normalized_to_pixel<T>(coords[bq * 2], g.width);
    const T cy = normalized_to_pixel<T>(coords[bq * 2 + 1], g.height);
    for (int32_t s = threadIdx.x; s < pp; s += blockDim.x) {
      const int32_t i = s / g.p, j = s - (s / g.p) * g.p;
      const T ox = sample_offset<T>(j, g.p), oy = sample_offset<T>(i, g.p);
      AxisSample<T> xs, ys;
      xs.fill(cx + ox * sx, g.width, padding, need_pos ? 1 : 0);
      ys.fill(cy + oy * sy, g.height, padding, need_pos ? 1 : 0);
      T gx = T(0), gy = T(0);
      for (int64_t c = 0; c < g.channels; ++c) {
        const int64_t plane_start = (b * g.channels + c) * plane;
        const T go = load<scalar_t, T>(grad_out + (bq * g.channels + c) * pp + s);
#pragma unroll
        for (int l = 0; l < 4; ++l) {
          const int64_t row_start = plane_start + static_cast<int64_t>(ys.index[l]) * g.width;
          if (need_pos) {
            T taps[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) taps[k] = load<scalar_t, T>(image + row_start + xs.index[k]);
            gx += go * ys.w[l] * dot4(xs.d1, taps);
            gy += go * ys.d1[l] * dot4(xs.w, taps);
          }
          if (need_image) {
            const T gw = go * ys.w[l];
#pragma unroll
            for (int k = 0; k < 4; ++k) atomicAdd(grad_image + row_start + xs.index[k], gw * xs.w[k]);
          }
        }
      }
      sums[0] += gx;
      sums[1] += gy;
      sums[2] += gx * ox;
      sums[3] += gy * oy;
    }
  }
  if (!need_pos) return;  // uniform over the grid
  reduce_block<kBlockThreads>(sums, query_sums,
                              step_partials + 2 * static_cast<int64_t>(blockIdx.x));
  if (active && threadIdx.x == 0) {
    grad_coords[bq * 2] = query_sums[threadIdx.y][0] * pixel_per_unit<T>(g.width);
    grad_coords[bq * 2 + 1] = query_sums[threadIdx.y][1] * pixel_per_unit<T>(g.height);
  }
}

// ---------------------------------------------------------------- double backward
//
// S = <v_image, dL/dimage> + <v_coords, dL/dcoords> + <v_step, dL/dstep> with
// L = <grad_output, F(image, u, step)>; see csrc/patch_sample.cpp for the derivation.

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kBlockThreads)
    double_backward_kernel(Shape g, const scalar_t* __restrict__ grad_out,
                           const scalar_t* __restrict__ image, const T* __restrict__ coords,
                           const T* __restrict__ step, const scalar_t* __restrict__ v_image,
                           const T* __restrict__ v_coords, const T* __restrict__ v_step,
                           int64_t padding, bool need_grad_out, bool image_terms, bool need_pos,
                           scalar_t* __restrict__ out_grad_out, T* __restrict__ out_image,
                           T* __restrict__ out_coords, T* __restrict__ step_partials) {
  __shared__ T query_sums[kMaxWarpsPerQuery][2];
  const int32_t pp = g.p * g.p;
  const int64_t plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t bq = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool active = bq < g.batch * g.queries;
  const bool has_direction = v_coords != nullptr;  // v_step is then set too (zeros if absent)
  const T sx = step[0], sy = step[1];
  T sums[4] = {T(0), T(0), T(0), T(0)};
  if (active) {
    const int64_t b = bq / g.queries;
    const T cx = normalized_to_pixel<T>(coords[bq * 2], g.width);
    const T cy = normalized_to_pixel<T>(coords[bq * 2 + 1], g.height);
    const T dq_x = has_direction ? v_coords[bq * 2] * pixel_per_unit<T>(g.width) : T(0);
    const T dq_y = has_direction ? v_coords[bq * 2 + 1] * pixel_per_unit<T>(g.height) : T(0);
    const T v_sx = has_direction ? v_step[0] : T(0), v_sy = has_direction ? v_step[1] : T(0);
    for (int32_t s = threadIdx.x; s < pp; s += blockDim.x) {
      const int32_t i = s / g.p, j = s - (s / g.p) * g.p;
      const T ox = sample_offset<T>(j, g.p), oy = sample_offset<T>(i, g.p);
      const T dx = dq_x + ox * v_sx, dy = dq_y + oy * v_sy;
      AxisSample<T> xs, ys;
      xs.fill(cx + ox * sx, g.width, padding, 2);
      ys.fill(cy + oy * sy, g.height, padding, 2);
      T hx_sum = T(0), hy_sum = T(0);
      for (int64_t c = 0; c < g.channels; ++c) {
        const int64_t plane_start = (b * g.channels + c) * plane;
        const int64_t out_index = (bq * g.channels + c) * pp + s;
        const T go = load<scalar_t, T>(grad_out + out_index);
        T fx = 0, fy = 0, fxx = 0, fxy = 0, fyy = 0, gv = 0, gvx = 0, gvy = 0;
#pragma unroll
        for (int l = 0; l < 4; ++l) {
          const int64_t row_start = plane_start + static_cast<int64_t>(ys.index[l]) * g.width;
          if (has_direction) {
            T taps[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) taps[k] = load<scalar_t, T>(image + row_start + xs.index[k]);
            const T a = dot4(xs.w, taps), ax = dot4(xs.d1, taps), axx = dot4(xs.d2, taps);
            fx += ys.w[l] * ax;
            fy += ys.d1[l] * a;
            fxx += ys.w[l] * axx;
            fxy += ys.d1[l] * ax;
            fyy += ys.d2[l] * a;
          }
          if (v_image != nullptr) {
            T taps[4];
#pragma unroll
            for (int k = 0; k < 4; ++k)
              taps[k] = load<scalar_t, T>(v_image + row_start + xs.index[k]);
            const T a = dot4(xs.w, taps), ax = dot4(xs.d1, taps);
            gv += ys.w[l] * a;
            gvx += ys.w[l] * ax;
            gvy += ys.d1[l] * a;
          }
          if (image_terms) {
            const T ry = go * ys.w[l] * dx, rdy = go * ys.d1[l] * dy;
#pragma unroll
            for (int k = 0; k < 4; ++k)
              atomicAdd(out_image + row_start + xs.index[k], ry * xs.d1[k] + rdy * xs.w[k]);
          }
        }
        if (need_grad_out) out_grad_out[out_index] = static_cast<scalar_t>(gv + fx * dx + fy * dy);
        hx_sum += go * (gvx + fxx * dx + fxy * dy);
        hy_sum += go * (gvy + fxy * dx + fyy * dy);
      }
      sums[0] += hx_sum;
      sums[1] += hy_sum;
      sums[2] += hx_sum * ox;
      sums[3] += hy_sum * oy;
    }
  }
  if (!need_pos) return;  // uniform over the grid
  reduce_block<kBlockThreads>(sums, query_sums,
                              step_partials + 2 * static_cast<int64_t>(blockIdx.x));
  if (active && threadIdx.x == 0) {
    out_coords[bq * 2] = query_sums[threadIdx.y][0] * pixel_per_unit<T>(g.width);
    out_coords[bq * 2 + 1] = query_sums[threadIdx.y][1] * pixel_per_unit<T>(g.height);
  }
}

// ---------------------------------------------------------------- host side

at::ScalarType opmath_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

void check_inputs(const at::Tensor& image, const at::Tensor& coords, const at::Tensor& step,
                  int64_t patch_size, int64_t padding) {
  TORCH_CHECK(image.dim() == 4, "patch_sample: image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(coords.dim() == 3 && coords.size(2) == 2 && coords.size(0) == image.size(0),
              "patch_sample: coords must be (B, Q, 2) with B = ", image.size(0), ", got ",
              coords.sizes());
  TORCH_CHECK(step.dim() == 1 && step.size(0) == 2, "patch_sample: step must be (2,), got ",
              step.sizes());
  const auto dtype = image.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "patch_sample (cuda): image dtype must be float16, bfloat16, float32 or float64, "
              "got ", dtype);
  // 16-bit coordinates would resolve only ~1/512 of the image: float32 for 16-bit images.
  for (const auto* tensor : {&coords, &step}) {
    TORCH_CHECK(tensor->scalar_type() == opmath_dtype(dtype),
                "patch_sample (cuda): coords and step must be ", opmath_dtype(dtype), " for a ",
                dtype, " image, got ", tensor->scalar_type());
  }
  TORCH_CHECK(image.is_cuda() && coords.device() == image.device() &&
                  step.device() == image.device(),
              "patch_sample (cuda): image, coords and step must be on one CUDA device");
  TORCH_CHECK(patch_size >= 1 && patch_size < 46341, "patch_sample: patch_size must be in [1, "
              "46340], got ", patch_size);
  TORCH_CHECK(padding >= kZeros && padding <= kReflection,
              "patch_sample: padding code must be 0, 1 or 2, got ", padding);
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1, "patch_sample: image H and W must be >= 1");
  TORCH_CHECK(image.size(2) < (1 << 30) && image.size(3) < (1 << 30),
              "patch_sample (cuda): image H and W must be below 2^30");
}

// Incoming gradients must be on the image's device: a kernel would read another GPU's memory
// as its own.
void check_same_device(const char* op, const char* name, const at::Tensor& tensor,
                       const at::Tensor& image) {
  TORCH_CHECK(tensor.device() == image.device(), op, ": ", name, " is on ", tensor.device(),
              " but image is on ", image.device());
}

Shape shape_of(const at::Tensor& image, const at::Tensor& coords, int64_t patch_size) {
  return {image.size(0), image.size(1), coords.size(1), static_cast<int32_t>(image.size(2)),
          static_cast<int32_t>(image.size(3)), static_cast<int32_t>(patch_size)};
}

at::Tensor patch_sample_cuda(const at::Tensor& image, const at::Tensor& coords,
                             const at::Tensor& step, int64_t patch_size, int64_t padding) {
  check_inputs(image, coords, step, patch_size, padding);
  const c10::cuda::CUDAGuard guard(image.device());
  const Shape g = shape_of(image, coords, patch_size);
  auto out = at::empty({g.batch, g.queries, g.channels, patch_size, patch_size}, image.options());
  if (out.numel() == 0) return out;
  const auto acc = opmath_dtype(image.scalar_type());
  const auto image_c = image.contiguous();
  const auto coords_c = coords.to(acc).contiguous();
  const auto step_c = step.to(acc).contiguous();
  const int64_t total = g.batch * g.queries * patch_size * patch_size;
  const int64_t blocks = std::min<int64_t>((total + kForwardThreads - 1) / kForwardThreads,
                                           int64_t(1) << 30);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(),
                                  "patch_sample_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, T><<<static_cast<unsigned>(blocks), kForwardThreads, 0, stream>>>(
        g, image_c.const_data_ptr<scalar_t>(), coords_c.const_data_ptr<T>(),
        step_c.const_data_ptr<T>(), out.mutable_data_ptr<scalar_t>(), padding);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> patch_sample_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, int64_t patch_size, int64_t padding, std::array<bool, 3> output_mask) {
  check_inputs(image, coords, step, patch_size, padding);
  check_same_device("patch_sample_backward (cuda)", "grad_output", grad_output, image);
  const c10::cuda::CUDAGuard guard(image.device());
  const Shape g = shape_of(image, coords, patch_size);
  TORCH_CHECK(grad_output.sizes() ==
                  at::IntArrayRef({g.batch, g.queries, g.channels, patch_size, patch_size}),
              "patch_sample_backward: grad_output must be (B, Q, C, p, p), got ",
              grad_output.sizes());
  const auto acc = opmath_dtype(image.scalar_type());
  const bool need_image = output_mask[0];
  const bool need_pos = output_mask[1] || output_mask[2];
  if (need_image) at::globalContext().alertNotDeterministic("funknn_fast::patch_sample_backward (CUDA)");
  auto grad_image = at::zeros(image.sizes(), image.options().dtype(acc));
  auto grad_coords = at::zeros(coords.sizes(), coords.options().dtype(acc));
  const dim3 block = query_block<kBlockThreads>(patch_size);
  const int64_t blocks = (g.batch * g.queries + block.y - 1) / block.y;
  auto partials = at::zeros({std::max<int64_t>(blocks, 1), 2}, step.options().dtype(acc));
  if (grad_output.numel() > 0 && (need_image || need_pos)) {
    TORCH_CHECK(blocks < (int64_t(1) << 31), "patch_sample_backward (cuda): too many queries");
    const auto grad_c = grad_output.contiguous().to(image.scalar_type());
    const auto image_c = image.contiguous();
    const auto coords_c = coords.to(acc).contiguous();
    const auto step_c = step.to(acc).contiguous();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(),
                                    "patch_sample_backward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, T><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
          g, grad_c.const_data_ptr<scalar_t>(), image_c.const_data_ptr<scalar_t>(),
          coords_c.const_data_ptr<T>(), step_c.const_data_ptr<T>(), padding, need_image,
          need_pos, grad_image.mutable_data_ptr<T>(), grad_coords.mutable_data_ptr<T>(),
          partials.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_image.to(image.scalar_type()), grad_coords.to(coords.scalar_type()),
          partials.sum(0).to(step.scalar_type())};
}

at::Tensor optional_as(const std::optional<at::Tensor>& tensor, at::ScalarType dtype) {
  if (!tensor.has_value() || !tensor->defined()) return at::Tensor();
  return tensor->to(dtype).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> patch_sample_double_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, const std::optional<at::Tensor>& grad_grad_image,
    const std::optional<at::Tensor>& grad_grad_coords,
    const std::optional<at::Tensor>& grad_grad_step, int64_t patch_size, int64_t padding,
    std::array<bool, 4> output_mask) {
  check_inputs(image, coords, step, patch_size, padding);
  const char* op = "patch_sample_double_backward (cuda)";
  check_same_device(op, "grad_output", grad_output, image);
  if (grad_grad_image.has_value() && grad_grad_image->defined())
    check_same_device(op, "grad_grad_image", *grad_grad_image, image);
  if (grad_grad_coords.has_value() && grad_grad_coords->defined())
    check_same_device(op, "grad_grad_coords", *grad_grad_coords, image);
  if (grad_grad_step.has_value() && grad_grad_step->defined())
    check_same_device(op, "grad_grad_step", *grad_grad_step, image);
  const c10::cuda::CUDAGuard guard(image.device());
  const Shape g = shape_of(image, coords, patch_size);
  TORCH_CHECK(grad_output.sizes() ==
                  at::IntArrayRef({g.batch, g.queries, g.channels, patch_size, patch_size}),
              "patch_sample_double_backward: grad_output must be (B, Q, C, p, p), got ",
              grad_output.sizes());
  const auto dtype = image.scalar_type();
  const auto acc = opmath_dtype(dtype);
  auto v_image = optional_as(grad_grad_image, dtype);
  auto v_coords = optional_as(grad_grad_coords, acc);
  auto v_step = optional_as(grad_grad_step, acc);
  if (v_image.defined())
    TORCH_CHECK(v_image.sizes() == image.sizes(), "grad_grad_image must have image's shape");
  if (v_coords.defined())
    TORCH_CHECK(v_coords.sizes() == coords.sizes(), "grad_grad_coords must have coords' shape");
  if (v_step.defined())
    TORCH_CHECK(v_step.sizes() == step.sizes(), "grad_grad_step must have step's shape");
  const bool has_direction = v_coords.defined() || v_step.defined();
  if (has_direction && !v_coords.defined()) v_coords = at::zeros(coords.sizes(), coords.options().dtype(acc));
  if (has_direction && !v_step.defined()) v_step = at::zeros({2}, step.options().dtype(acc));
  const bool need_grad_out = output_mask[0];
  const bool image_terms = output_mask[1] && has_direction;
  const bool need_pos = output_mask[2] || output_mask[3];
  if (image_terms)
    at::globalContext().alertNotDeterministic("funknn_fast::patch_sample_double_backward (CUDA)");
  auto out_grad_out = at::zeros(grad_output.sizes(), image.options());
  auto out_image = at::zeros(image.sizes(), image.options().dtype(acc));
  auto out_coords = at::zeros(coords.sizes(), coords.options().dtype(acc));
  const dim3 block = query_block<kBlockThreads>(patch_size);
  const int64_t blocks = (g.batch * g.queries + block.y - 1) / block.y;
  auto partials = at::zeros({std::max<int64_t>(blocks, 1), 2}, step.options().dtype(acc));
  const bool work = need_grad_out || image_terms || need_pos;
  if (grad_output.numel() > 0 && (v_image.defined() || has_direction) && work) {
    TORCH_CHECK(blocks < (int64_t(1) << 31), "patch_sample_double_backward (cuda): too many queries");
    const auto grad_c = grad_output.contiguous().to(dtype);
    const auto image_c = image.contiguous();
    const auto coords_c = coords.to(acc).contiguous();
    const auto step_c = step.to(acc).contiguous();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype,
                                    "patch_sample_double_backward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      double_backward_kernel<scalar_t, T><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
          g, grad_c.const_data_ptr<scalar_t>(), image_c.const_data_ptr<scalar_t>(),
          coords_c.const_data_ptr<T>(), step_c.const_data_ptr<T>(),
          v_image.defined() ? v_image.const_data_ptr<scalar_t>() : nullptr,
          has_direction ? v_coords.const_data_ptr<T>() : nullptr,
          has_direction ? v_step.const_data_ptr<T>() : nullptr, padding, need_grad_out,
          image_terms, need_pos, out_grad_out.mutable_data_ptr<scalar_t>(),
          out_image.mutable_data_ptr<T>(), out_coords.mutable_data_ptr<T>(),
          partials.mutable_data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {out_grad_out, out_image.to(dtype), out_coords.to(coords.scalar_type()),
          partials.sum(0).to(step.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(funknn_fast, CUDA, m) {
  m.impl("patch_sample", &patch_sample_cuda);
  m.impl("patch_sample_backward", &patch_sample_backward_cuda);
  m.impl("patch_sample_double_backward", &patch_sample_double_backward_cuda);
}

}  // namespace funknn
