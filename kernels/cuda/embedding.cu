// Token embedding: one block per output row copies (f32) or widens (bf16, dtype.h's
// Bf16ToFloat, exact) the table row of its token id.
#include "engram/kernels/dtype.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 128;

template <typename T>
__device__ __forceinline__ float Widen(T v);
template <>
__device__ __forceinline__ float Widen<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float Widen<uint16_t>(uint16_t v) {
  return Bf16ToFloat(v);
}

template <typename T>
__global__ void EmbeddingKernel(const T* table, int dim, const int32_t* ids, float* out) {
  const int64_t r = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[r]) * dim;
  float* dst = out + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = Widen(src[i]);
}

}  // namespace

void Embedding(const void* table, DType dtype, int dim, const int32_t* ids, int64_t n, float* out,
               cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(n);
  if (dtype == DType::kBF16) {
    EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint16_t*>(table), dim, ids,
                                                     out);
  } else {
    EmbeddingKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(table), dim, ids,
                                                     out);
  }
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
