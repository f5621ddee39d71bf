// SwiGLU of the MLP: out = silu(gate) * up, elementwise with row_math.h's Silu. Memory-bound;
// a grid-stride loop keeps consecutive threads on consecutive values.
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void SwiGluKernel(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = Silu(gate[i]) * up[i];
}

}  // namespace

void SwiGlu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return;
  SwiGluKernel<<<GridStrideBlocks(n, kThreads), kThreads, 0, stream>>>(gate, up, n, out);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
