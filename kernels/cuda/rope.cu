// Rotate-half RoPE: one thread per rotated pair, each calling row_math.h's RopePair, the
// function the CPU's RopeHead loops over.
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void RopeKernel(float* x, int64_t pairs, int heads, int head_dim, const int64_t* pos,
                           const float* inv_freq) {
  const int half = head_dim / 2;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < pairs;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(t % half);
    const int64_t head = t / half;  // row * heads + h
    const int64_t row = head / heads;
    float* xh = x + head * head_dim;
    RopePair(xh + i, xh + i + half, pos[row], inv_freq[i]);
  }
}

}  // namespace

void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
          const float* inv_freq, cudaStream_t stream) {
  const int64_t pairs = rows * heads * (head_dim / 2);
  if (pairs == 0) return;
  RopeKernel<<<GridStrideBlocks(pairs, kThreads), kThreads, 0, stream>>>(x, pairs, heads, head_dim,
                                                                         pos, inv_freq);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
