// RMSNorm: one block per row. The block reduces the sum of squares in a fixed tree, then every
// value is finished with row_math.h's RmsInvScaleFromSumSq / RmsNormValue, the functions the
// CPU's RmsNormRow ends with; only the order of the sum differs from the CPU.
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, int dim, const float* weight, int branches, float eps, float* y) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  const float* w = weight + static_cast<int64_t>(row % branches) * dim;
  float* yr = y + row * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
  // Every read of xr happens before the barriers inside BlockSum, so y may alias x.
  const float inv = RmsInvScaleFromSumSq(BlockSum(ss, scratch), dim, eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = RmsNormValue(xr[i], inv, w[i]);
}

}  // namespace

void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, int branches, float eps,
             float* y, cudaStream_t stream) {
  if (rows == 0) return;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, dim, weight, branches, eps,
                                                                      y);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
