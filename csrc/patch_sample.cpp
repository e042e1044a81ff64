// funknn_fast::patch_sample: schemas of the three ops and their CPU kernels.
//
//   patch_sample(image (B,C,H,W), coords (B,Q,2), step (2,), patch_size, padding) -> (B,Q,C,p,p)
//   patch_sample_backward(grad_output, image, coords, step, ...) -> (grad_image, grad_coords,
//                                                                   grad_step)
//   patch_sample_double_backward(grad_output, image, coords, step, grad_grad_image?,
//                                grad_grad_coords?, grad_grad_step?, ...)
//       -> (grad_grad_output, grad_image, grad_coords, grad_step)
//
// The math (Keys weights, padding, coordinate convention) lives in patch_sample_math.h. The
// kernels are separable: the x weights of every patch column and the y weights of every patch row
// are computed once per query, then each sample is a 4 x 4 weighted sum. Queries are processed in
// parallel; the image gradient is accumulated in one buffer per worker and summed afterwards, so
// it is deterministic for a given thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu_workers.h"
#include "patch_sample_math.h"

namespace funknn {
namespace {

// Per-axis tap tables of one query: for each of the p samples on the axis, four padded indices
// (already multiplied by the stride of the axis) and the weights with their first and second
// derivatives in the pixel position.
template <typename T>
struct AxisTable {
  std::vector<int64_t> offset;  // (p, 4)
  std::vector<T> w, d1, d2;     // (p, 4)
  std::vector<T> shift;         // (p,) offset of the sample from the centre, in steps

  explicit AxisTable(int64_t p) : offset(p * 4), w(p * 4), d1(p * 4), d2(p * 4), shift(p) {
    for (int64_t s = 0; s < p; ++s) shift[s] = static_cast<T>(s) - static_cast<T>(p - 1) / T(2);
  }

  // order 0: weights only; 1: and first derivatives; 2: and second derivatives.
  void fill(T centre, T step, int64_t n, int64_t stride, int64_t padding, int order) {
    const int64_t p = static_cast<int64_t>(shift.size());
    for (int64_t s = 0; s < p; ++s) {
      int64_t index[4];
      bool valid[4];
      T t;
      const bool inside = axis_taps<T>(centre + shift[s] * step, n, padding, index, valid, &t);
      T* ws = &w[s * 4];
      keys_weights<T>(t, ws);
      if (order >= 1) keys_weights_d1<T>(t, &d1[s * 4]);
      if (order >= 2) keys_weights_d2<T>(t, &d2[s * 4]);
      for (int k = 0; k < 4; ++k) {
        offset[s * 4 + k] = index[k] * stride;
        if (!valid[k]) {
          ws[k] = T(0);
          if (order >= 1) d1[s * 4 + k] = T(0);
          if (order >= 2) d2[s * 4 + k] = T(0);
        }
        if (!inside) {
          if (order >= 1) d1[s * 4 + k] = T(0);
          if (order >= 2) d2[s * 4 + k] = T(0);
        }
      }
    }
  }
};

struct Geometry {
  int64_t batch, channels, height, width, queries, p;
};

Geometry geometry_of(const at::Tensor& image, const at::Tensor& coords, int64_t patch_size) {
  return {image.size(0), image.size(1), image.size(2), image.size(3), coords.size(1), patch_size};
}

void check_inputs(const at::Tensor& image, const at::Tensor& coords, const at::Tensor& step,
                  int64_t patch_size, int64_t padding) {
  TORCH_CHECK(image.dim() == 4, "patch_sample: image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(coords.dim() == 3 && coords.size(2) == 2 && coords.size(0) == image.size(0),
              "patch_sample: coords must be (B, Q, 2) with B = ", image.size(0), ", got ",
              coords.sizes());
  TORCH_CHECK(step.dim() == 1 && step.size(0) == 2, "patch_sample: step must be (2,), got ",
              step.sizes());
  TORCH_CHECK(image.scalar_type() == coords.scalar_type() &&
                  image.scalar_type() == step.scalar_type(),
              "patch_sample: image, coords and step must share a dtype");
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "patch_sample (cpu): dtype must be float32 or float64, got ", image.scalar_type());
  TORCH_CHECK(patch_size >= 1, "patch_sample: patch_size must be >= 1, got ", patch_size);
  TORCH_CHECK(padding >= kZeros && padding <= kReflection,
              "patch_sample: padding code must be 0, 1 or 2, got ", padding);
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1, "patch_sample: image H and W must be >= 1");
}

// ---------------------------------------------------------------- channel vectors
//
// The forward and backward kernels work on a channels-last copy of the image whose channels are
// padded to a multiple of 4: one tap then feeds four channels with one vector load, and the tap
// indices and weights, shared by all channels, are used once per block of four channels.

template <typename T>
struct Lanes {
  typedef T vec __attribute__((vector_size(4 * sizeof(T))));
};
template <typename T>
using Vec4 = typename Lanes<T>::vec;

template <typename T>
inline Vec4<T> load4(const T* p) {
  Vec4<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store4(T* p, Vec4<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
inline T lane_sum(Vec4<T> v) {
  return v[0] + v[1] + v[2] + v[3];
}

inline int64_t padded_channels(int64_t channels) { return (channels + 3) / 4 * 4; }

// (B, C, H, W) -> (B, H, W, round_up(C, 4)), zero padded.
at::Tensor channels_last_padded(const at::Tensor& image) {
  const int64_t channels = image.size(1);
  auto out = at::zeros({image.size(0), image.size(2), image.size(3), padded_channels(channels)},
                       image.options());
  out.narrow(3, 0, channels).copy_(image.permute({0, 2, 3, 1}));
  return out;
}

// (B, H, W, round_up(C, 4)) -> (B, C, H, W).
at::Tensor channels_first(const at::Tensor& padded, int64_t channels) {
  return padded.narrow(3, 0, channels).permute({0, 3, 1, 2}).contiguous();
}

// ---------------------------------------------------------------- forward

template <typename T>
void forward_kernel(const Geometry& g, const T* image, const T* coords, const T* step, T* out,
                    int64_t padding) {
  using V = Vec4<T>;
  const int64_t p = g.p, pp = p * p, cp = padded_channels(g.channels);
  const int64_t row_stride = g.width * cp, batch_stride = g.height * row_stride;
  const T sx = step[0], sy = step[1];
  at::parallel_for(0, g.batch * g.queries, 16, [&](int64_t begin, int64_t end) {
    AxisTable<T> cols(p), rows(p);
    for (int64_t bq = begin; bq < end; ++bq) {
      cols.fill(normalized_to_pixel<T>(coords[bq * 2], g.width), sx, g.width, cp, padding, 0);
      rows.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height), sy, g.height, row_stride,
                padding, 0);
      const T* src = image + (bq / g.queries) * batch_stride;
      T* dst = out + bq * g.channels * pp;
      for (int64_t c0 = 0; c0 < g.channels; c0 += 4) {
        const int64_t lanes = std::min<int64_t>(4, g.channels - c0);
        for (int64_t i = 0; i < p; ++i) {
          for (int64_t j = 0; j < p; ++j) {
            const int64_t* col = &cols.offset[j * 4];
            const T* wx = &cols.w[j * 4];
            V acc = {};
            for (int l = 0; l < 4; ++l) {
              const T* row = src + c0 + rows.offset[i * 4 + l];
              const V h = wx[0] * load4(row + col[0]) + wx[1] * load4(row + col[1]) +
                          wx[2] * load4(row + col[2]) + wx[3] * load4(row + col[3]);
              acc += rows.w[i * 4 + l] * h;
            }
            for (int64_t lane = 0; lane < lanes; ++lane) dst[(c0 + lane) * pp + i * p + j] = acc[lane];
          }
        }
      }
    }
  });
}

at::Tensor patch_sample_cpu(const at::Tensor& image, const at::Tensor& coords,
                            const at::Tensor& step, int64_t patch_size, int64_t padding) {
  check_inputs(image, coords, step, patch_size, padding);
  const Geometry g = geometry_of(image, coords, patch_size);
  auto out = at::empty({g.batch, g.queries, g.channels, patch_size, patch_size}, image.options());
  if (out.numel() == 0) return out;
  const auto image_cl = channels_last_padded(image);
  const auto coords_c = coords.contiguous();
  const auto step_c = step.contiguous();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "patch_sample_cpu", [&] {
    forward_kernel<scalar_t>(g, image_cl.const_data_ptr<scalar_t>(),
                             coords_c.const_data_ptr<scalar_t>(),
                             step_c.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                             padding);
  });
  return out;
}

// ---------------------------------------------------------------- backward

template <typename T>
void backward_kernel(const Geometry& g, const T* grad_out, const T* image, const T* coords,
                     const T* step, int64_t padding, bool need_image, bool need_coords,
                     bool need_step, T* grad_image, T* grad_coords, T* grad_step) {
  using V = Vec4<T>;
  const int64_t p = g.p, pp = p * p, cp = padded_channels(g.channels);
  const int64_t row_stride = g.width * cp, batch_stride = g.height * row_stride;
  const int64_t image_numel = g.batch * batch_stride;
  const T sx = step[0], sy = step[1];
  const bool need_position = need_coords || need_step;
  const int order = need_position ? 1 : 0;
  const T scale_x = pixel_per_unit<T>(g.width), scale_y = pixel_per_unit<T>(g.height);
  WorkerAccumulators<T> partials(image_numel, need_image);

  const int64_t workers = for_each_worker(
      g.batch * g.queries, 64, [&](int64_t worker, int64_t begin, int64_t end) {
        AxisTable<T> cols(p), rows(p);
        T* gimg = partials.image(worker);
        T step_x_acc = T(0), step_y_acc = T(0);
        for (int64_t bq = begin; bq < end; ++bq) {
          const int64_t image_start = (bq / g.queries) * batch_stride;
          cols.fill(normalized_to_pixel<T>(coords[bq * 2], g.width), sx, g.width, cp, padding,
                    order);
          rows.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height), sy, g.height,
                    row_stride, padding, order);
          V gpx = {}, gpy = {}, gsx = {}, gsy = {};
          for (int64_t c0 = 0; c0 < g.channels; c0 += 4) {
            const int64_t lanes = std::min<int64_t>(4, g.channels - c0);
            const T* src = image + image_start + c0;
            const T* go = grad_out + (bq * g.channels + c0) * pp;
            for (int64_t i = 0; i < p; ++i) {
              for (int64_t j = 0; j < p; ++j) {
                V gov = {};
                for (int64_t lane = 0; lane < lanes; ++lane) gov[lane] = go[lane * pp + i * p + j];
                const int64_t* col = &cols.offset[j * 4];
                const T* wx = &cols.w[j * 4];
                if (need_position) {
                  const T* dwx = &cols.d1[j * 4];
                  V fx = {}, fy = {};
                  for (int l = 0; l < 4; ++l) {
                    const T* row = src + rows.offset[i * 4 + l];
                    const V v0 = load4(row + col[0]), v1 = load4(row + col[1]),
                            v2 = load4(row + col[2]), v3 = load4(row + col[3]);
                    const V a = wx[0] * v0 + wx[1] * v1 + wx[2] * v2 + wx[3] * v3;
                    const V ax = dwx[0] * v0 + dwx[1] * v1 + dwx[2] * v2 + dwx[3] * v3;
                    fx += rows.w[i * 4 + l] * ax;
                    fy += rows.d1[i * 4 + l] * a;
                  }
                  fx *= gov;
                  fy *= gov;
                  gpx += fx;
                  gpy += fy;
                  gsx += cols.shift[j] * fx;
                  gsy += rows.shift[i] * fy;
                }
                if (need_image) {
                  for (int l = 0; l < 4; ++l) {
                    T* dst = gimg + image_start + c0 + rows.offset[i * 4 + l];
                    const V gw = rows.w[i * 4 + l] * gov;
                    for (int k = 0; k < 4; ++k) store4(dst + col[k], load4(dst + col[k]) + wx[k] * gw);
                  }
                }
              }
            }
          }
          if (need_coords) {
            grad_coords[bq * 2] = lane_sum<T>(gpx) * scale_x;
            grad_coords[bq * 2 + 1] = lane_sum<T>(gpy) * scale_y;
          }
          step_x_acc += lane_sum<T>(gsx);
          step_y_acc += lane_sum<T>(gsy);
        }
        partials.set_step(worker, step_x_acc, step_y_acc);
      });

  partials.reduce(workers, need_step ? grad_step : nullptr, need_image ? grad_image : nullptr);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> patch_sample_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, int64_t patch_size, int64_t padding, std::array<bool, 3> output_mask) {
  check_inputs(image, coords, step, patch_size, padding);
  const Geometry g = geometry_of(image, coords, patch_size);
  TORCH_CHECK(grad_output.sizes() ==
                  at::IntArrayRef({g.batch, g.queries, g.channels, patch_size, patch_size}),
              "patch_sample_backward: grad_output must be (B, Q, C, p, p), got ",
              grad_output.sizes());
  auto grad_coords = at::zeros_like(coords, at::MemoryFormat::Contiguous);
  auto grad_step = at::zeros_like(step, at::MemoryFormat::Contiguous);
  if (grad_output.numel() == 0 || !(output_mask[0] || output_mask[1] || output_mask[2]))
    return {at::zeros_like(image, at::MemoryFormat::Contiguous), grad_coords, grad_step};
  const auto grad_c = grad_output.contiguous().to(image.scalar_type());
  const auto image_cl = channels_last_padded(image);
  auto grad_image_cl = at::empty_like(image_cl);
  const auto coords_c = coords.contiguous();
  const auto step_c = step.contiguous();
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "patch_sample_backward_cpu", [&] {
    backward_kernel<scalar_t>(
        g, grad_c.const_data_ptr<scalar_t>(), image_cl.const_data_ptr<scalar_t>(),
        coords_c.const_data_ptr<scalar_t>(), step_c.const_data_ptr<scalar_t>(), padding,
        output_mask[0], output_mask[1], output_mask[2],
        grad_image_cl.mutable_data_ptr<scalar_t>(), grad_coords.mutable_data_ptr<scalar_t>(),
        grad_step.mutable_data_ptr<scalar_t>());
  });
  auto grad_image = output_mask[0] ? channels_first(grad_image_cl, g.channels)
                                   : at::zeros_like(image, at::MemoryFormat::Contiguous);
  return {grad_image, grad_coords, grad_step};
}

// ---------------------------------------------------------------- double backward
//
// The backward computes the three partial derivatives of L = <grad_output, F(image, u, step)>.
// Given cotangents (v_image, v_coords, v_step) of those three, the double backward returns the
// gradient of S = <v_image, dL/dimage> + <v_coords, dL/dcoords> + <v_step, dL/dstep>, i.e. of
// <grad_output, F(v_image) + J_u F du> with du the displacement of every sample
// (du_x = v_coords_x * W / 2 + shift_j * v_step_x, likewise for y), with respect to grad_output,
// image, coords and step. Second derivatives of F in the positions enter through the last two.

template <typename T>
void double_backward_kernel(const Geometry& g, const T* grad_out, const T* image,
                            const T* coords, const T* step, const T* v_image, const T* v_coords,
                            const T* v_step, int64_t padding, bool need_grad_out, bool need_image,
                            bool need_coords, bool need_step, T* out_grad_out, T* out_image,
                            T* out_coords, T* out_step) {
  using V = Vec4<T>;
  const int64_t p = g.p, pp = p * p, cp = padded_channels(g.channels);
  const int64_t row_stride = g.width * cp, batch_stride = g.height * row_stride;
  const int64_t image_numel = g.batch * batch_stride;
  const T sx = step[0], sy = step[1];
  const T scale_x = pixel_per_unit<T>(g.width), scale_y = pixel_per_unit<T>(g.height);
  const bool has_direction = v_coords != nullptr || v_step != nullptr;
  const T v_sx = v_step ? v_step[0] : T(0), v_sy = v_step ? v_step[1] : T(0);
  const bool need_position = need_coords || need_step;
  const bool image_terms = need_image && has_direction;
  WorkerAccumulators<T> partials(image_numel, image_terms);

  const int64_t workers = for_each_worker(
      g.batch * g.queries, 64, [&](int64_t worker, int64_t begin, int64_t end) {
        AxisTable<T> cols(p), rows(p);
        std::vector<T> du_x(p), du_y(p);
        T* gimg = partials.image(worker);
        T step_x_acc = T(0), step_y_acc = T(0);
        for (int64_t bq = begin; bq < end; ++bq) {
          const int64_t image_start = (bq / g.queries) * batch_stride;
          cols.fill(normalized_to_pixel<T>(coords[bq * 2], g.width), sx, g.width, cp, padding, 2);
          rows.fill(normalized_to_pixel<T>(coords[bq * 2 + 1], g.height), sy, g.height,
                    row_stride, padding, 2);
          const T dq_x = v_coords ? v_coords[bq * 2] * scale_x : T(0);
          const T dq_y = v_coords ? v_coords[bq * 2 + 1] * scale_y : T(0);
          for (int64_t s = 0; s < p; ++s) {
            du_x[s] = dq_x + cols.shift[s] * v_sx;
            du_y[s] = dq_y + rows.shift[s] * v_sy;
          }
          V gpx = {}, gpy = {}, gsx = {}, gsy = {};
          for (int64_t c0 = 0; c0 < g.channels; c0 += 4) {
            const int64_t lanes = std::min<int64_t>(4, g.channels - c0);
            const T* src = image + image_start + c0;
            const T* vsrc = v_image ? v_image + image_start + c0 : nullptr;
            const T* go = grad_out + (bq * g.channels + c0) * pp;
            T* ggo = need_grad_out ? out_grad_out + (bq * g.channels + c0) * pp : nullptr;
            for (int64_t i = 0; i < p; ++i) {
              for (int64_t j = 0; j < p; ++j) {
                const int64_t* col = &cols.offset[j * 4];
                const T* wx = &cols.w[j * 4];
                const T* dwx = &cols.d1[j * 4];
                const T* d2wx = &cols.d2[j * 4];
                V fx = {}, fy = {}, fxx = {}, fxy = {}, fyy = {}, gv = {}, gvx = {}, gvy = {};
                for (int l = 0; l < 4; ++l) {
                  const int64_t row_offset = rows.offset[i * 4 + l];
                  const T wy = rows.w[i * 4 + l], dwy = rows.d1[i * 4 + l],
                          d2wy = rows.d2[i * 4 + l];
                  if (has_direction) {
                    const T* row = src + row_offset;
                    const V v0 = load4(row + col[0]), v1 = load4(row + col[1]),
                            v2 = load4(row + col[2]), v3 = load4(row + col[3]);
                    const V a = wx[0] * v0 + wx[1] * v1 + wx[2] * v2 + wx[3] * v3;
                    const V ax = dwx[0] * v0 + dwx[1] * v1 + dwx[2] * v2 + dwx[3] * v3;
                    const V axx = d2wx[0] * v0 + d2wx[1] * v1 + d2wx[2] * v2 + d2wx[3] * v3;
                    fx += wy * ax;
                    fy += dwy * a;
                    fxx += wy * axx;
                    fxy += dwy * ax;
                    fyy += d2wy * a;
                  }
                  if (vsrc) {
                    const T* row = vsrc + row_offset;
                    const V v0 = load4(row + col[0]), v1 = load4(row + col[1]),
                            v2 = load4(row + col[2]), v3 = load4(row + col[3]);
                    const V a = wx[0] * v0 + wx[1] * v1 + wx[2] * v2 + wx[3] * v3;
                    const V ax = dwx[0] * v0 + dwx[1] * v1 + dwx[2] * v2 + dwx[3] * v3;
                    gv += wy * a;
                    gvx += wy * ax;
                    gvy += dwy * a;
                  }
                }
                const T dx = du_x[j], dy = du_y[i];
                if (ggo) {
                  const V value = gv + dx * fx + dy * fy;
                  for (int64_t lane = 0; lane < lanes; ++lane) ggo[lane * pp + i * p + j] = value[lane];
                }
                if (!need_position && !gimg) continue;
                V gov = {};
                for (int64_t lane = 0; lane < lanes; ++lane) gov[lane] = go[lane * pp + i * p + j];
                if (need_position) {
                  const V hx = gov * (gvx + dx * fxx + dy * fxy);
                  const V hy = gov * (gvy + dx * fxy + dy * fyy);
                  gpx += hx;
                  gpy += hy;
                  gsx += cols.shift[j] * hx;
                  gsy += rows.shift[i] * hy;
                }
                if (gimg) {
                  for (int l = 0; l < 4; ++l) {
                    const V ry = (rows.w[i * 4 + l] * dx) * gov;
                    const V rdy = (rows.d1[i * 4 + l] * dy) * gov;
                    T* dst = gimg + image_start + c0 + rows.offset[i * 4 + l];
                    for (int k = 0; k < 4; ++k)
                      store4(dst + col[k], load4(dst + col[k]) + dwx[k] * ry + wx[k] * rdy);
                  }
                }
              }
            }
          }
          if (need_coords) {
            out_coords[bq * 2] = lane_sum<T>(gpx) * scale_x;
            out_coords[bq * 2 + 1] = lane_sum<T>(gpy) * scale_y;
          }
          step_x_acc += lane_sum<T>(gsx);
          step_y_acc += lane_sum<T>(gsy);
        }
        partials.set_step(worker, step_x_acc, step_y_acc);
      });

  partials.reduce(workers, need_step ? out_step : nullptr, image_terms ? out_image : nullptr);
}

template <typename T>
const T* optional_data(const at::Tensor& tensor) {
  return tensor.defined() ? tensor.const_data_ptr<T>() : nullptr;
}

at::Tensor present(const std::optional<at::Tensor>& tensor) {
  return tensor.has_value() ? *tensor : at::Tensor();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> patch_sample_double_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& coords,
    const at::Tensor& step, const std::optional<at::Tensor>& grad_grad_image,
    const std::optional<at::Tensor>& grad_grad_coords,
    const std::optional<at::Tensor>& grad_grad_step, int64_t patch_size, int64_t padding,
    std::array<bool, 4> output_mask) {
  check_inputs(image, coords, step, patch_size, padding);
  const Geometry g = geometry_of(image, coords, patch_size);
  const auto dtype = image.scalar_type();
  TORCH_CHECK(grad_output.sizes() ==
                  at::IntArrayRef({g.batch, g.queries, g.channels, patch_size, patch_size}),
              "patch_sample_double_backward: grad_output must be (B, Q, C, p, p), got ",
              grad_output.sizes());
  auto out_grad_out = at::zeros({g.batch, g.queries, g.channels, patch_size, patch_size},
                                image.options());
  auto out_coords = at::zeros_like(coords, at::MemoryFormat::Contiguous);
  auto out_step = at::zeros_like(step, at::MemoryFormat::Contiguous);
  const auto v_image = present(grad_grad_image);
  const auto v_coords = present(grad_grad_coords);
  const auto v_step = present(grad_grad_step);
  if (v_image.defined())
    TORCH_CHECK(v_image.sizes() == image.sizes(), "grad_grad_image must have image's shape");
  if (v_coords.defined())
    TORCH_CHECK(v_coords.sizes() == coords.sizes(), "grad_grad_coords must have coords' shape");
  if (v_step.defined())
    TORCH_CHECK(v_step.sizes() == step.sizes(), "grad_grad_step must have step's shape");
  const bool has_direction = v_coords.defined() || v_step.defined();
  if (grad_output.numel() == 0 || !(v_image.defined() || has_direction))
    return {out_grad_out, at::zeros_like(image, at::MemoryFormat::Contiguous), out_coords,
            out_step};
  const auto grad_c = grad_output.contiguous().to(dtype);
  const auto image_cl = channels_last_padded(image);
  const auto v_image_cl = v_image.defined() ? channels_last_padded(v_image.to(dtype)) : at::Tensor();
  const auto v_coords_c = v_coords.defined() ? v_coords.contiguous().to(dtype) : at::Tensor();
  const auto v_step_c = v_step.defined() ? v_step.contiguous().to(dtype) : at::Tensor();
  auto out_image_cl = at::empty_like(image_cl);
  const auto coords_c = coords.contiguous();
  const auto step_c = step.contiguous();
  AT_DISPATCH_FLOATING_TYPES(dtype, "patch_sample_double_backward_cpu", [&] {
    double_backward_kernel<scalar_t>(
        g, grad_c.const_data_ptr<scalar_t>(), image_cl.const_data_ptr<scalar_t>(),
        coords_c.const_data_ptr<scalar_t>(), step_c.const_data_ptr<scalar_t>(),
        optional_data<scalar_t>(v_image_cl), optional_data<scalar_t>(v_coords_c),
        optional_data<scalar_t>(v_step_c), padding, output_mask[0], output_mask[1],
        output_mask[2], output_mask[3], out_grad_out.mutable_data_ptr<scalar_t>(),
        out_image_cl.mutable_data_ptr<scalar_t>(), out_coords.mutable_data_ptr<scalar_t>(),
        out_step.mutable_data_ptr<scalar_t>());
  });
  auto out_image = output_mask[1] && has_direction
                       ? channels_first(out_image_cl, g.channels)
                       : at::zeros_like(image, at::MemoryFormat::Contiguous);
  return {out_grad_out, out_image, out_coords, out_step};
}

}  // namespace

TORCH_LIBRARY(funknn_fast, m) {
  m.def("patch_sample(Tensor image, Tensor coords, Tensor step, int patch_size, int padding) -> Tensor");
  m.def(
      "patch_sample_backward(Tensor grad_output, Tensor image, Tensor coords, Tensor step, "
      "int patch_size, int padding, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  m.def(
      "patch_sample_double_backward(Tensor grad_output, Tensor image, Tensor coords, Tensor step, "
      "Tensor? grad_grad_image, Tensor? grad_grad_coords, Tensor? grad_grad_step, "
      "int patch_size, int padding, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(funknn_fast, CPU, m) {
  m.impl("patch_sample", &patch_sample_cpu);
  m.impl("patch_sample_backward", &patch_sample_backward_cpu);
  m.impl("patch_sample_double_backward", &patch_sample_double_backward_cpu);
}

}  // namespace funknn
