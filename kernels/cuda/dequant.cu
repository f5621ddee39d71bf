// Engram table rows to float on the device: one warp per output row, each lane a strided subset
// of the row's values through row_math.h's DequantValue (the per-value form of the CPU's
// DequantRow; both are exact conversions, so the results are bitwise equal). Also the float ->
// bf16 conversion of activations for the GEMM.
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__global__ void DequantKernel(DequantParams p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= p.rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t src = p.src_row != nullptr ? p.src_row[r] : r;
  const uint8_t* row = static_cast<const uint8_t*>(p.packed) + src * p.packed_bytes;
  // fp8 rows carry their scale bytes right after the d values.
  const uint8_t* scales = row + p.d;
  float* out = p.out + r * p.d;
  for (int i = lane; i < p.d; i += 32) out[i] = DequantValue(row, scales, p.dtype, i);
}

__global__ void ToBf16Kernel(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = FloatToBf16(x[i]);
}

}  // namespace

void DequantRows(const DequantParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  DequantKernel<<<static_cast<unsigned>(CeilDiv(p.rows, kWarps)), kThreads, 0, stream>>>(p);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void ConvertToBf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream) {
  if (n == 0) return;
  ToBf16Kernel<<<GridStrideBlocks(n, kThreads), kThreads, 0, stream>>>(x, n, out);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
