// Argument checks of the patch_sample_jets ops that every compiled backend shares (CPU:
// patch_jets.cpp, CUDA: cuda/patch_jets_cuda.cu): tensor ranks and shapes, patch size, padding
// and mode codes, image size. The dtype and device rules differ per backend and stay there.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "patch_jets_math.h"
#include "patch_sample_math.h"

namespace funknn {

inline void check_jets_shapes(const at::Tensor& image, const at::Tensor& coords,
                              const at::Tensor& step, int64_t patch_size, int64_t padding,
                              int64_t mode) {
  TORCH_CHECK(image.dim() == 4, "patch_sample_jets: image must be (B, C, H, W), got ",
              image.sizes());
  TORCH_CHECK(coords.dim() == 3 && coords.size(2) == 2 && coords.size(0) == image.size(0),
              "patch_sample_jets: coords must be (B, Q, 2) with B = ", image.size(0), ", got ",
              coords.sizes());
  TORCH_CHECK(step.dim() == 1 && step.size(0) == 2, "patch_sample_jets: step must be (2,), got ",
              step.sizes());
  TORCH_CHECK(patch_size >= 1, "patch_sample_jets: patch_size must be >= 1, got ", patch_size);
  TORCH_CHECK(padding >= kZeros && padding <= kReflection,
              "patch_sample_jets: padding code must be 0, 1 or 2, got ", padding);
  TORCH_CHECK(mode >= kJetsGradient && mode <= kJetsHessian,
              "patch_sample_jets: mode must be 0 (gradient), 1 (Laplacian) or 2 (Hessian), got ",
              mode);
  TORCH_CHECK(image.size(2) >= 1 && image.size(3) >= 1,
              "patch_sample_jets: image H and W must be >= 1");
}

}  // namespace funknn
