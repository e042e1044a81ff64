// Deterministic block reductions (and the block shape) shared by the backward kernels of
// csrc/cuda/patch_sample_cuda.cu and csrc/cuda/patch_jets_cuda.cu. A block is blockDim.y queries
// x blockDim.x threads per query (blockDim.x a multiple of 32, so a warp never spans two queries;
// kThreads threads in all).
#pragma once

#include <algorithm>
#include <cstdint>

namespace funknn {
namespace {

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// Sums `values` (4 per thread) over the threads of each query (threadIdx.x) and over the block;
// writes the per-query sums of values[0..1] to query_sums[y] and the block sums of values[2..3]
// to block_sums (thread (0, 0) only). Warp shuffles, then shared memory in a fixed order.
template <int kThreads, typename T>
__device__ void reduce_block(T (&values)[4], T (*query_sums)[2], T* block_sums) {
  __shared__ T warp_partial[kThreads / 32][4];
  __shared__ T query_step[kThreads / 32][2];
  const int lane = threadIdx.x % 32;
  const int warps_per_query = blockDim.x / 32;
  const int warp = threadIdx.y * warps_per_query + threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < 4; ++k) values[k] = warp_sum(values[k]);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < 4; ++k) warp_partial[warp][k] = values[k];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    T sums[4] = {T(0), T(0), T(0), T(0)};
    for (int w = 0; w < warps_per_query; ++w)
      for (int k = 0; k < 4; ++k) sums[k] += warp_partial[threadIdx.y * warps_per_query + w][k];
    query_sums[threadIdx.y][0] = sums[0];
    query_sums[threadIdx.y][1] = sums[1];
    query_step[threadIdx.y][0] = sums[2];
    query_step[threadIdx.y][1] = sums[3];
  }
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    T sx = T(0), sy = T(0);
    for (int y = 0; y < static_cast<int>(blockDim.y); ++y) {
      sx += query_step[y][0];
      sy += query_step[y][1];
    }
    block_sums[0] = sx;
    block_sums[1] = sy;
  }
}

// Block shape of the backward kernels: TPQ threads per query (a multiple of 32, at most
// kThreads), QPB = kThreads / TPQ queries.
template <int kThreads>
dim3 query_block(int64_t patch_size) {
  const int64_t pp = patch_size * patch_size;
  const int64_t tpq = std::min<int64_t>(kThreads, (pp + 31) / 32 * 32);
  return dim3(static_cast<unsigned>(tpq), static_cast<unsigned>(kThreads / tpq));
}

}  // namespace
}  // namespace funknn
