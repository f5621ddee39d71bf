// Device-side helpers shared by the kernels of this folder: warp and block reductions with a
// fixed order (so a kernel gives the same bits on every run), and grid-size arithmetic.
// Block reductions require blockDim.x to be a multiple of 32 and at most 1024.
#pragma once

#include <cstdint>

namespace engram::cuda {

constexpr unsigned kFullWarp = 0xffffffffu;

inline constexpr int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over n items: one item per thread up to 2^20 blocks (far more
// than any GPU keeps resident), then the loop takes over.
inline unsigned GridStrideBlocks(int64_t n, int threads) {
  const int64_t blocks = CeilDiv(n, threads);
  return static_cast<unsigned>(blocks < (int64_t{1} << 20) ? blocks : (int64_t{1} << 20));
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullWarp, v, o);
  return v;
}

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullWarp, v, o);
  return v;
}

// The sum of v over the block, returned to every thread. `scratch` holds 32 values in shared
// memory; the leading barrier lets one scratch array serve consecutive reductions.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  // Every warp folds the partials itself: all threads get the total without a third barrier.
  T total = lane < warps ? scratch[lane] : T(0);
  return WarpSum(total);
}

}  // namespace engram::cuda
