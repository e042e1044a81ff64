// CUDA kernels of funknn_fast::patch_sample_jets and patch_sample_jets_backward (schemas and CPU
// kernels in csrc/patch_jets.cpp). The per-sample math is csrc/patch_jets_math.h, shared with the
// CPU kernels; the per-thread work is csrc/cuda/patch_jets_sample.cuh (also run on the host by
// tests/test_cuda_compile.py). Same padding, knot, NaN/inf and 2^40 clamp conventions as the CPU
// kernels (csrc/patch_sample_math.h).
//
//   * forward: one thread per (query, sample), grid-stride; x and y taps and jet weights (value,
//     first, second derivatives) in registers, loaded once; a loop over channels reads the 16 taps
//     once and accumulates every component in registers; K coalesced writes per channel.
//   * backward: a block of QPB x TPQ threads handles QPB queries, TPQ threads (a multiple of 32)
//     sharing the p * p samples of one query (as csrc/cuda/patch_sample_cuda.cu). Coordinate
//     gradients are reduced per query (warp shuffles, then shared memory in a fixed order) and
//     the step gradient gets one partial sum per block, summed afterwards: both deterministic.
//     The coordinate and step derivatives use the next derivative order of the Keys weights
//     (third derivatives for the second-order components).
//     Image gradient: atomicAdd into an fp32 (fp64 for float64) buffer by default. When
//     torch.use_deterministic_algorithms(True) is on, the kernel instead records every tap
//     contribution and its image index (chunks of at most 2^24 contributions), and
//     index_put_(accumulate=True) -- deterministic on CUDA -- sums them in a fixed order
//     (as kernels/patch_sample_triton.py does).
//
// dtypes: float32 and float64 images with coords / step of the same dtype; float16 / bfloat16
// images with float32 (or image-dtype) coords and step. Weights and sums in at::opmath_type
// (float; double for float64); jets and the image gradient in the image dtype, coordinate and
// step gradients in the dtypes of coords and step.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/index_put.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>

#include "block_reduce.cuh"
#include "patch_jets_checks.h"
#include "patch_jets_math.h"
#include "patch_jets_sample.cuh"
#include "patch_sample_math.h"

namespace funknn {
namespace {

constexpr int kJetsForwardThreads = 256;
constexpr int kJetsBlockThreads = 256;
constexpr int64_t kJetsContributionsPerChunk = int64_t(1) << 24;
// Minimum resident blocks per SM for fp32 accumulation (__launch_bounds__): caps the registers
// at 80 (forward) and 128 (backward), where ptxas fits them without spills for sm_90 (unbounded,
// it takes 99-123 and 144); fp64 kernels are left unbounded (they would spill).
constexpr int kJetsForwardMinBlocks32 = 3;
constexpr int kJetsBackwardMinBlocks32 = 2;

// ---------------------------------------------------------------- forward

template <bool kSecond, typename scalar_t, typename T>
__global__ void __launch_bounds__(kJetsForwardThreads,
                                  sizeof(T) == 4 ? kJetsForwardMinBlocks32 : 1)
    jets_forward_kernel(JetShape g, const scalar_t* __restrict__ image,
                        const T* __restrict__ coords, const T* __restrict__ step,
                        scalar_t* __restrict__ out, int64_t padding) {
  const int64_t pp = static_cast<int64_t>(g.p) * g.p;
  const int64_t total = g.batch * g.queries * pp;
  const T sx = step[0], sy = step[1];
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bq = e / pp;
    const int32_t s = static_cast<int32_t>(e - bq * pp);
    jets_forward_sample<kSecond>(g, image, coords, sx, sy, padding, bq, s, out);
  }
}

// ---------------------------------------------------------------- backward
//
// Queries [bq_begin, bq_end) of the flattened (B, Q); block b of the launch writes its step
// partial sums to step_partials[block_offset + b].

template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kJetsBlockThreads,
                                  sizeof(T) == 4 ? kJetsBackwardMinBlocks32 : 1)
    jets_backward_kernel(JetShape g, const scalar_t* __restrict__ grad_jets,
                         const scalar_t* __restrict__ image, const T* __restrict__ coords,
                         const T* __restrict__ step, int64_t padding, bool need_image,
                         bool need_position, int64_t bq_begin, int64_t bq_end,
                         int64_t block_offset, T* __restrict__ grad_image,
                         T* __restrict__ record_values, int64_t* __restrict__ record_indices,
                         T* __restrict__ grad_coords, T* __restrict__ step_partials) {
  __shared__ T query_sums[kJetsBlockThreads / 32][2];
  const int32_t pp = g.p * g.p;
  const int64_t local = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const int64_t bq = bq_begin + local;
  const bool active = bq < bq_end;
  const T sx = step[0], sy = step[1];
  T sums[4] = {T(0), T(0), T(0), T(0)};  // d/dpx, d/dpy, d/dstep_x, d/dstep_y
  if (active) {
    JetImageSink<T> sink{grad_image, record_values, record_indices, (bq_end - bq_begin) * pp, 0};
    for (int32_t s = threadIdx.x; s < pp; s += blockDim.x) {
      sink.sample = local * pp + s;
      jets_backward_sample(g, grad_jets, image, coords, sx, sy, padding, need_image,
                           need_position, bq, s, sink, sums);
    }
  }
  if (!need_position) return;  // uniform over the grid
  reduce_block<kJetsBlockThreads>(
      sums, query_sums, step_partials + 2 * (block_offset + static_cast<int64_t>(blockIdx.x)));
  if (active && threadIdx.x == 0) {
    grad_coords[bq * 2] = query_sums[threadIdx.y][0] * pixel_per_unit<T>(g.width);
    grad_coords[bq * 2 + 1] = query_sums[threadIdx.y][1] * pixel_per_unit<T>(g.height);
  }
}

// ---------------------------------------------------------------- host side

at::ScalarType jets_opmath_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

void check_jets_inputs_cuda(const at::Tensor& image, const at::Tensor& coords,
                            const at::Tensor& step, int64_t patch_size, int64_t padding,
                            int64_t mode) {
  check_jets_shapes(image, coords, step, patch_size, padding, mode);
  const auto dtype = image.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "patch_sample_jets (cuda): image dtype must be float16, bfloat16, float32 or "
              "float64, got ", dtype);
  // 16-bit coordinates would resolve only ~1/512 of the image: float32 for 16-bit images.
  for (const auto* tensor : {&coords, &step}) {
    TORCH_CHECK(tensor->scalar_type() == jets_opmath_dtype(dtype),
                "patch_sample_jets (cuda): coords and step must be ", jets_opmath_dtype(dtype),
                " for a ", dtype, " image, got ", tensor->scalar_type());
  }
  TORCH_CHECK(image.is_cuda() && coords.device() == image.device() &&
                  step.device() == image.device(),
              "patch_sample_jets (cuda): image, coords and step must be on one CUDA device");
  TORCH_CHECK(patch_size < 46341,
              "patch_sample_jets (cuda): patch_size must be at most 46340, got ", patch_size);
  TORCH_CHECK(image.size(2) < (1 << 30) && image.size(3) < (1 << 30),
              "patch_sample_jets (cuda): image H and W must be below 2^30");
}

JetShape jet_shape_of(const at::Tensor& image, const at::Tensor& coords, int64_t patch_size,
                      int64_t mode) {
  return {image.size(0), image.size(1), coords.size(1), static_cast<int32_t>(image.size(2)),
          static_cast<int32_t>(image.size(3)), static_cast<int32_t>(patch_size), mode};
}

at::Tensor patch_sample_jets_cuda(const at::Tensor& image, const at::Tensor& coords,
                                  const at::Tensor& step, int64_t patch_size, int64_t padding,
                                  int64_t mode) {
  check_jets_inputs_cuda(image, coords, step, patch_size, padding, mode);
  const c10::cuda::CUDAGuard guard(image.device());
  const JetShape g = jet_shape_of(image, coords, patch_size, mode);
  auto out = at::empty({jet_components(mode), g.batch, g.queries, g.channels, patch_size,
                        patch_size},
                       image.options());
  if (out.numel() == 0) return out;
  const auto acc = jets_opmath_dtype(image.scalar_type());
  const auto image_c = image.contiguous();
  const auto coords_c = coords.to(acc).contiguous();
  const auto step_c = step.to(acc).contiguous();
  const int64_t total = g.batch * g.queries * patch_size * patch_size;
  const int64_t blocks = std::min<int64_t>((total + kJetsForwardThreads - 1) / kJetsForwardThreads,
                                           int64_t(1) << 30);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(),
                                  "patch_sample_jets_cuda", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(blocks), kJetsForwardThreads, 0, stream>>>(
          g, image_c.const_data_ptr<scalar_t>(), coords_c.const_data_ptr<T>(),
          step_c.const_data_ptr<T>(), out.mutable_data_ptr<scalar_t>(), padding);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (mode == kJetsGradient) {
      launch(jets_forward_kernel<false, scalar_t, T>);
    } else {
      launch(jets_forward_kernel<true, scalar_t, T>);
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> patch_sample_jets_backward_cuda(
    const at::Tensor& grad_jets, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, int64_t patch_size, int64_t padding, int64_t mode,
    std::array<bool, 3> output_mask) {
  check_jets_inputs_cuda(image, coords, step, patch_size, padding, mode);
  const c10::cuda::CUDAGuard guard(image.device());
  const JetShape g = jet_shape_of(image, coords, patch_size, mode);
  TORCH_CHECK(grad_jets.sizes() == at::IntArrayRef({jet_components(mode), g.batch, g.queries,
                                                    g.channels, patch_size, patch_size}),
              "patch_sample_jets_backward: grad_jets must be (K, B, Q, C, p, p) with K = ",
              jet_components(mode), ", got ", grad_jets.sizes());
  TORCH_CHECK(grad_jets.device() == image.device(),
              "patch_sample_jets_backward (cuda): grad_jets must be on the image's device");
  const auto dtype = image.scalar_type();
  const auto acc = jets_opmath_dtype(dtype);
  const bool need_image = output_mask[0];
  const bool need_coords = output_mask[1];
  const bool need_step = output_mask[2];
  const bool need_position = need_coords || need_step;
  const bool deterministic = need_image && at::globalContext().deterministicAlgorithms();
  const int64_t pp = patch_size * patch_size;
  const int64_t total = g.batch * g.queries;
  // Deterministic mode records 16 C contributions per sample; chunks bound that buffer.
  const int64_t taps_per_query = pp * g.channels * 16;
  const int64_t chunk =
      deterministic
          ? std::max<int64_t>(1, kJetsContributionsPerChunk / std::max<int64_t>(taps_per_query, 1))
          : std::max<int64_t>(total, 1);
  const dim3 block = query_block<kJetsBlockThreads>(patch_size);
  int64_t blocks_total = 0;
  for (int64_t begin = 0; begin < total; begin += chunk)
    blocks_total += (std::min(total, begin + chunk) - begin + block.y - 1) / block.y;

  auto grad_image = at::zeros(image.sizes(), image.options().dtype(need_image ? acc : dtype));
  auto grad_coords = at::zeros(coords.sizes(), coords.options().dtype(acc));
  auto partials = at::zeros({std::max<int64_t>(blocks_total, 1), 2}, step.options().dtype(acc));
  if (grad_jets.numel() > 0 && (need_image || need_position)) {
    const auto grad_c = grad_jets.to(dtype).contiguous();
    const auto image_c = image.contiguous();
    const auto coords_c = coords.to(acc).contiguous();
    const auto step_c = step.to(acc).contiguous();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    int64_t block_offset = 0;
    for (int64_t begin = 0; begin < total; begin += chunk) {
      const int64_t end = std::min(total, begin + chunk);
      const int64_t blocks = (end - begin + block.y - 1) / block.y;
      TORCH_CHECK(blocks < (int64_t(1) << 31),
                  "patch_sample_jets_backward (cuda): too many queries");
      at::Tensor values, indices;
      if (deterministic) {
        // Every slot is written by the kernel; zeros keep a stray slot harmless.
        values = at::zeros({(end - begin) * taps_per_query}, image.options().dtype(acc));
        indices = at::zeros({(end - begin) * taps_per_query}, image.options().dtype(at::kLong));
      }
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype,
                                      "patch_sample_jets_backward_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        jets_backward_kernel<scalar_t, T><<<static_cast<unsigned>(blocks), block, 0, stream>>>(
            g, grad_c.const_data_ptr<scalar_t>(), image_c.const_data_ptr<scalar_t>(),
            coords_c.const_data_ptr<T>(), step_c.const_data_ptr<T>(), padding, need_image,
            need_position, begin, end, block_offset,
            need_image && !deterministic ? grad_image.mutable_data_ptr<T>() : nullptr,
            deterministic ? values.mutable_data_ptr<T>() : nullptr,
            deterministic ? indices.mutable_data_ptr<int64_t>() : nullptr,
            grad_coords.mutable_data_ptr<T>(), partials.mutable_data_ptr<T>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
      if (deterministic) {
        c10::List<std::optional<at::Tensor>> where;
        where.push_back(indices);
        grad_image.view({-1}).index_put_(where, values, /*accumulate=*/true);
      }
      block_offset += blocks;
    }
  }
  auto grad_coords_out = need_coords ? grad_coords.to(coords.scalar_type())
                                     : at::zeros(coords.sizes(), coords.options());
  auto grad_step_out = need_step ? partials.sum(0).to(step.scalar_type())
                                 : at::zeros(step.sizes(), step.options());
  return {grad_image.to(dtype), grad_coords_out, grad_step_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(funknn_fast, CUDA, m) {
  m.impl("patch_sample_jets", &patch_sample_jets_cuda);
  m.impl("patch_sample_jets_backward", &patch_sample_jets_backward_cuda);
}

}  // namespace funknn
