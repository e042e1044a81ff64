// funknn_fast::patch_sample_jets: a patch and its derivatives in the query coordinate, one pass.
//
//   patch_sample_jets(image (B,C,H,W), coords (B,Q,2), step (2,), patch_size, padding, mode)
//       -> jets (K, B, Q, C, p, p)
//   patch_sample_jets_backward(grad_jets, image, coords, step, patch_size, padding, mode,
//                              output_mask) -> (grad_image, grad_coords, grad_step)
//
// Every sample of a patch moves with the query, so d/dx of sample (i, j) is the x derivative of
// the interpolant at that sample's position. The components of each mode and the per-sample math
// (jet weights, row accumulation, backward coefficients) are in csrc/patch_jets_math.h, shared
// with the CUDA kernels (csrc/cuda/patch_jets_cuda.cu). The backward contracts grad_jets with the
// jets' derivatives in the image (a scatter of the combined weights), in the query position
// (third derivatives of the Keys weights enter for the second-order components) and in the step
// (sample (i, j) moves by (j - (p-1)/2, i - (p-1)/2) pixels per unit step).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include "cpu_workers.h"
#include "patch_jets_checks.h"
#include "patch_jets_math.h"
#include "patch_sample_math.h"

namespace funknn {
namespace {

// Per-axis tap tables of one query: padded offsets (times the axis stride) and the Keys weights
// with their first, second and third derivatives in the pixel position, for each of the p
// samples on the axis. Taps outside (zeros padding) get zero weights; past the clamp range all
// derivatives vanish.
template <typename T>
struct JetAxisTable {
  std::vector<int64_t> offset;     // (p, 4)
  std::vector<T> w, d1, d2, d3;    // (p, 4)
  std::vector<T> shift;            // (p,)

  explicit JetAxisTable(int64_t p)
      : offset(p * 4), w(p * 4), d1(p * 4), d2(p * 4), d3(p * 4), shift(p) {
    for (int64_t s = 0; s < p; ++s) shift[s] = static_cast<T>(s) - static_cast<T>(p - 1) / T(2);
  }

  void fill(T centre, T step, int64_t n, int64_t stride, int64_t padding, bool third) {
    const int64_t p = static_cast<int64_t>(shift.size());
    for (int64_t s = 0; s < p; ++s) {
      int64_t index[4];
      bool valid[4];
      T t;
      const bool inside = axis_taps<T>(centre + shift[s] * step, n, padding, index, valid, &t);
      jet_axis_weights<T>(t, valid, inside, third, &w[s * 4], &d1[s * 4], &d2[s * 4],
                          &d3[s * 4]);
      for (int k = 0; k < 4; ++k) offset[s * 4 + k] = index[k] * stride;
    }
  }
};

struct JetGeometry {
  int64_t batch, channels, height, width, queries, p, components;
};

void check_jets_inputs(const at::Tensor& image, const at::Tensor& coords, const at::Tensor& step,
                       int64_t patch_size, int64_t padding, int64_t mode) {
  check_jets_shapes(image, coords, step, patch_size, padding, mode);
  TORCH_CHECK(image.scalar_type() == coords.scalar_type() &&
                  image.scalar_type() == step.scalar_type(),
              "patch_sample_jets: image, coords and step must share a dtype");
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "patch_sample_jets (cpu): dtype must be float32 or float64, got ",
              image.scalar_type());
}

JetGeometry jet_geometry(const at::Tensor& image, const at::Tensor& coords, int64_t patch_size,
                         int64_t mode) {
  return {image.size(0), image.size(1), image.size(2), image.size(3),
          coords.size(1), patch_size,   jet_components(mode)};
}

// ---------------------------------------------------------------- forward

template <typename T>
void jets_forward_kernel(const JetGeometry& g, const T* image, const T* coords, const T* step,
                         T* out, int64_t padding, int64_t mode) {
  const int64_t p = g.p, pp = p * p, plane = g.height * g.width;
  const int64_t component_stride = g.batch * g.queries * g.channels * pp;
  const int components = jet_components(mode);
  const T sx = step[0], sy = step[1];
  const JetScales<T> scales = jet_scales<T>(g.width, g.height);
  const bool second = mode != kJetsGradient;
  at::parallel_for(0, g.batch * g.queries, 16, [&](int64_t begin, int64_t end) {
    JetAxisTable<T> cols(p), rows(p);
    for (int64_t bq = begin; bq < end; ++bq) {
      const int64_t b = bq / g.queries;
      cols.fill(normalized_to_pixel<T>(coords[bq * 2], g.width), sx, g.width, 1, padding, false);
      rows.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height), sy, g.height, g.width,
                padding, false);
      for (int64_t c = 0; c < g.channels; ++c) {
        const T* src = image + (b * g.channels + c) * plane;
        T* dst = out + (bq * g.channels + c) * pp;
        for (int64_t i = 0; i < p; ++i) {
          for (int64_t j = 0; j < p; ++j) {
            const int64_t* col = &cols.offset[j * 4];
            const T* wx = &cols.w[j * 4];
            const T* dwx = &cols.d1[j * 4];
            const T* d2wx = &cols.d2[j * 4];
            JetSums<T> sums = jet_sums_zero<T>();
            for (int l = 0; l < 4; ++l) {
              const T* src_row = src + rows.offset[i * 4 + l];
              const T v[4] = {src_row[col[0]], src_row[col[1]], src_row[col[2]], src_row[col[3]]};
              jet_add_row(v, wx, dwx, d2wx, rows.w[i * 4 + l], rows.d1[i * 4 + l],
                          rows.d2[i * 4 + l], second, &sums);
            }
            T values[6];
            jet_outputs(sums, scales, mode, values);
            const int64_t e = i * p + j;
            for (int k = 0; k < components; ++k) dst[k * component_stride + e] = values[k];
          }
        }
      }
    }
  });
}

at::Tensor patch_sample_jets_cpu(const at::Tensor& image, const at::Tensor& coords,
                                 const at::Tensor& step, int64_t patch_size, int64_t padding,
                                 int64_t mode) {
  check_jets_inputs(image, coords, step, patch_size, padding, mode);
  const JetGeometry g = jet_geometry(image, coords, patch_size, mode);
  auto out = at::empty({g.components, g.batch, g.queries, g.channels, patch_size, patch_size},
                       image.options());
  if (out.numel() == 0) return out;
  const auto image_c = image.contiguous();
  const auto coords_c = coords.contiguous();
  const auto step_c = step.contiguous();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "patch_sample_jets_cpu", [&] {
    jets_forward_kernel<scalar_t>(g, image_c.const_data_ptr<scalar_t>(),
                                  coords_c.const_data_ptr<scalar_t>(),
                                  step_c.const_data_ptr<scalar_t>(),
                                  out.mutable_data_ptr<scalar_t>(), padding, mode);
  });
  return out;
}

// ---------------------------------------------------------------- backward
//
// The contracted functional of one sample and its derivatives: see csrc/patch_jets_math.h.

template <typename T>
void jets_backward_kernel(const JetGeometry& g, const T* grad_jets, const T* image,
                          const T* coords, const T* step, int64_t padding, int64_t mode,
                          bool need_image, bool need_coords, bool need_step, T* grad_image,
                          T* grad_coords, T* grad_step) {
  const int64_t p = g.p, pp = p * p, plane = g.height * g.width;
  const int64_t image_numel = g.batch * g.channels * plane;
  const int64_t component_stride = g.batch * g.queries * g.channels * pp;
  const int components = jet_components(mode);
  const T sx = step[0], sy = step[1];
  const JetScales<T> scales = jet_scales<T>(g.width, g.height);
  const T scale_x = scales.x, scale_y = scales.y;
  const bool need_position = need_coords || need_step;
  WorkerAccumulators<T> partials(image_numel, need_image);

  const int64_t workers = for_each_worker(
      g.batch * g.queries, 64, [&](int64_t worker, int64_t begin, int64_t end) {
        JetAxisTable<T> cols(p), rows(p);
        T* gimg = partials.image(worker);
        T step_x_acc = T(0), step_y_acc = T(0);
        for (int64_t bq = begin; bq < end; ++bq) {
          const int64_t b = bq / g.queries;
          cols.fill(normalized_to_pixel<T>(coords[bq * 2], g.width), sx, g.width, 1, padding,
                    need_position);
          rows.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height), sy, g.height, g.width,
                    padding, need_position);
          T gpx = T(0), gpy = T(0), gsx = T(0), gsy = T(0);
          for (int64_t c = 0; c < g.channels; ++c) {
            const int64_t plane_start = (b * g.channels + c) * plane;
            const T* src = image + plane_start;
            const T* go = grad_jets + (bq * g.channels + c) * pp;
            for (int64_t i = 0; i < p; ++i) {
              for (int64_t j = 0; j < p; ++j) {
                const int64_t e = i * p + j;
                T incoming[6];
                for (int k = 0; k < components; ++k) incoming[k] = go[k * component_stride + e];
                const JetCoefficients<T> coef = jet_coefficients(incoming, scales, mode);
                const int64_t* col = &cols.offset[j * 4];
                JetTapCoefficients<T> a;
                jet_tap_coefficients(coef, &cols.w[j * 4], &cols.d1[j * 4], &cols.d2[j * 4],
                                     &cols.d3[j * 4], need_position, &a);
                T hx = T(0), hy = T(0);
                for (int l = 0; l < 4; ++l) {
                  const int64_t row_offset = rows.offset[i * 4 + l];
                  const T wy = rows.w[i * 4 + l], dwy = rows.d1[i * 4 + l],
                          d2wy = rows.d2[i * 4 + l];
                  if (need_position) {
                    const T d3wy = rows.d3[i * 4 + l];
                    const T* src_row = src + row_offset;
                    for (int k = 0; k < 4; ++k) {
                      const T v = src_row[col[k]];
                      hx += v * jet_row_weight(wy, dwy, d2wy, a.a0x[k], a.a1x[k], a.a2x[k]);
                      hy += v * jet_row_weight(dwy, d2wy, d3wy, a.a0[k], a.a1[k], a.a2[k]);
                    }
                  }
                  if (gimg) {
                    T* dst_row = gimg + plane_start + row_offset;
                    for (int k = 0; k < 4; ++k)
                      dst_row[col[k]] += jet_row_weight(wy, dwy, d2wy, a.a0[k], a.a1[k], a.a2[k]);
                  }
                }
                gpx += hx;
                gpy += hy;
                gsx += hx * cols.shift[j];
                gsy += hy * rows.shift[i];
              }
            }
          }
          if (need_coords) {
            grad_coords[bq * 2] = gpx * scale_x;
            grad_coords[bq * 2 + 1] = gpy * scale_y;
          }
          step_x_acc += gsx;
          step_y_acc += gsy;
        }
        partials.set_step(worker, step_x_acc, step_y_acc);
      });

  partials.reduce(workers, need_step ? grad_step : nullptr, need_image ? grad_image : nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> patch_sample_jets_backward_cpu(
    const at::Tensor& grad_jets, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, int64_t patch_size, int64_t padding, int64_t mode,
    std::array<bool, 3> output_mask) {
  check_jets_inputs(image, coords, step, patch_size, padding, mode);
  const JetGeometry g = jet_geometry(image, coords, patch_size, mode);
  TORCH_CHECK(grad_jets.sizes() == at::IntArrayRef({g.components, g.batch, g.queries, g.channels,
                                                    patch_size, patch_size}),
              "patch_sample_jets_backward: grad_jets must be (K, B, Q, C, p, p) with K = ",
              g.components, ", got ", grad_jets.sizes());
  auto grad_image = at::zeros_like(image, at::MemoryFormat::Contiguous);
  auto grad_coords = at::zeros_like(coords, at::MemoryFormat::Contiguous);
  auto grad_step = at::zeros_like(step, at::MemoryFormat::Contiguous);
  if (grad_jets.numel() == 0) return {grad_image, grad_coords, grad_step};
  const auto grad_c = grad_jets.contiguous().to(image.scalar_type());
  const auto image_c = image.contiguous();
  const auto coords_c = coords.contiguous();
  const auto step_c = step.contiguous();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "patch_sample_jets_backward_cpu", [&] {
    jets_backward_kernel<scalar_t>(
        g, grad_c.const_data_ptr<scalar_t>(), image_c.const_data_ptr<scalar_t>(),
        coords_c.const_data_ptr<scalar_t>(), step_c.const_data_ptr<scalar_t>(), padding, mode,
        output_mask[0], output_mask[1], output_mask[2], grad_image.mutable_data_ptr<scalar_t>(),
        grad_coords.mutable_data_ptr<scalar_t>(), grad_step.mutable_data_ptr<scalar_t>());
  });
  return {grad_image, grad_coords, grad_step};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(funknn_fast, m) {
  m.def(
      "patch_sample_jets(Tensor image, Tensor coords, Tensor step, int patch_size, int padding, "
      "int mode) -> Tensor");
  m.def(
      "patch_sample_jets_backward(Tensor grad_jets, Tensor image, Tensor coords, Tensor step, "
      "int patch_size, int padding, int mode, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(funknn_fast, CPU, m) {
  m.impl("patch_sample_jets", &patch_sample_jets_cpu);
  m.impl("patch_sample_jets_backward", &patch_sample_jets_backward_cpu);
}

}  // namespace funknn
