// Per-worker accumulation for the CPU backward kernels (patch_sample.cpp, patch_jets.cpp).
//
// Queries are split into one contiguous range per worker; each worker accumulates the image
// gradient and the two step-gradient partial sums in buffers of its own, and the buffers are
// summed at the end. No atomics, and the result is deterministic for a given thread count.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace funknn {

// Splits [0, total) into one contiguous range per worker (at most at::get_num_threads(), at
// least `grain` items each) and runs fn(worker, begin, end). Returns the number of workers.
template <typename Fn>
int64_t for_each_worker(int64_t total, int64_t grain, const Fn& fn) {
  const int64_t workers =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (total + grain - 1) / grain));
  at::parallel_for(0, workers, 1, [&](int64_t first, int64_t last) {
    for (int64_t worker = first; worker < last; ++worker)
      fn(worker, total * worker / workers, total * (worker + 1) / workers);
  });
  return workers;
}

template <typename T>
class WorkerAccumulators {
 public:
  // image_numel: size of one image-gradient buffer; with_image: whether to allocate them.
  WorkerAccumulators(int64_t image_numel, bool with_image)
      : workers_(std::max<int64_t>(1, at::get_num_threads())),
        image_numel_(image_numel),
        image_(with_image ? workers_ * image_numel : 0, T(0)),
        step_(workers_ * 2, T(0)) {}

  // The worker's zero-initialised image-gradient buffer (nullptr without image buffers).
  T* image(int64_t worker) { return image_.empty() ? nullptr : image_.data() + worker * image_numel_; }

  void set_step(int64_t worker, T x, T y) {
    step_[worker * 2] = x;
    step_[worker * 2 + 1] = y;
  }

  // Adds the step partials of the first `workers` workers to out_step[0..1] and writes the sum of
  // their image buffers to out_image; either output may be nullptr.
  void reduce(int64_t workers, T* out_step, T* out_image) const {
    if (out_step != nullptr) {
      for (int64_t w = 0; w < workers; ++w) {
        out_step[0] += step_[w * 2];
        out_step[1] += step_[w * 2 + 1];
      }
    }
    if (out_image == nullptr || image_.empty()) return;
    at::parallel_for(0, image_numel_, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        T sum = T(0);
        for (int64_t w = 0; w < workers; ++w) sum += image_[w * image_numel_ + e];
        out_image[e] = sum;
      }
    });
  }

 private:
  int64_t workers_, image_numel_;
  std::vector<T> image_, step_;
};

}  // namespace funknn
