// The multi-branch residual stream's row ops and the row gather/store around them. All are pure
// memory traffic, so each is a grid-stride loop over (row, column) in float4 when every address
// allows it (float otherwise); StoreRows goes one block per row instead, because its destination
// pointers, and so their alignment, are only known on the device. BranchMean adds the branches
// in float in order m = 0..M-1 from 0 and divides by float(M), CpuBackend's loop, so the two
// give the same bits.
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;

// Componentwise, so the float4 path rounds exactly as the float one.
__device__ __forceinline__ float4 operator+(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
__device__ __forceinline__ float4 operator/(float4 a, float b) {
  return make_float4(a.x / b, a.y / b, a.z / b, a.w / b);
}

// Rows of `dim` floats as `cols` elements of V (float4 needs dim % 4 == 0).
template <typename V>
__global__ void BroadcastKernel(const V* x, int64_t rows, int branches, int cols, V* h) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const V v = x[i];
    V* out = h + r * branches * cols + c;
    for (int m = 0; m < branches; ++m) out[static_cast<int64_t>(m) * cols] = v;
  }
}

template <typename V>
__global__ void BranchMeanKernel(const V* h, int64_t rows, int branches, int cols, V* x) {
  const int64_t n = rows * cols;
  const float count = static_cast<float>(branches);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const V* in = h + r * branches * cols + c;
    V s{};
    for (int m = 0; m < branches; ++m) s = s + in[static_cast<int64_t>(m) * cols];
    x[i] = s / count;
  }
}

template <typename V>
__global__ void AddToBranchesKernel(const V* delta, int64_t rows, int branches, int cols, V* h) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const V d = delta[i];
    V* out = h + r * branches * cols + c;
    for (int m = 0; m < branches; ++m) {
      V* p = out + static_cast<int64_t>(m) * cols;
      *p = *p + d;
    }
  }
}

template <typename V>
__global__ void GatherRowsKernel(const V* x, const int32_t* index, int64_t n, int cols, V* out) {
  const int64_t total = n * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    out[i] = x[static_cast<int64_t>(index[r]) * cols + c];
  }
}

// One block per row; the branch on the destination's alignment is uniform over the block.
__global__ void __launch_bounds__(kThreads)
    StoreRowsKernel(const float* src, int dim, bool src_vec, float* const* dst) {
  const int64_t r = blockIdx.x;
  float* d = dst[r];
  if (d == nullptr) return;
  const float* s = src + r * dim;
  if (src_vec && reinterpret_cast<uintptr_t>(d) % sizeof(float4) == 0) {
    const float4* s4 = reinterpret_cast<const float4*>(s);
    float4* d4 = reinterpret_cast<float4*>(d);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) d4[i] = s4[i];
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
  }
}

// float4 when dim is a multiple of 4 and both bases are 16-byte aligned (every row then is).
bool UseFloat4(int dim, const void* a, const void* b) {
  return dim % 4 == 0 && reinterpret_cast<uintptr_t>(a) % sizeof(float4) == 0 &&
         reinterpret_cast<uintptr_t>(b) % sizeof(float4) == 0;
}

// Calls launch(V{}, cols, blocks) with V = float4 or float over rows * dim floats, then checks
// the launch; nothing for an empty range (a zero-block grid is a launch error).
template <typename Launch>
void LaunchRowwise(int64_t rows, int dim, const void* in, const void* out, Launch launch) {
  if (rows == 0 || dim == 0) return;
  if (UseFloat4(dim, in, out)) {
    launch(float4{}, dim / 4, GridStrideBlocks(rows * (dim / 4), kThreads));
  } else {
    launch(float{}, dim, GridStrideBlocks(rows * dim, kThreads));
  }
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h,
                       cudaStream_t stream) {
  if (branches == 0) return;
  LaunchRowwise(rows, dim, x, h, [&](auto v, int cols, unsigned blocks) {
    using V = decltype(v);
    BroadcastKernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const V*>(x), rows, branches,
                                                     cols, reinterpret_cast<V*>(h));
  });
}

void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x,
                cudaStream_t stream) {
  if (rows == 0 || dim == 0 || branches == 0) return;
  if (branches == 1) {  // the stream itself, bit for bit (a sum from 0 would turn -0 into +0)
    if (x != h)
      ENGRAM_CUDA_CHECK(cudaMemcpyAsync(x, h, static_cast<size_t>(rows) * dim * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream));
    return;
  }
  LaunchRowwise(rows, dim, h, x, [&](auto v, int cols, unsigned blocks) {
    using V = decltype(v);
    BranchMeanKernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const V*>(h), rows, branches,
                                                      cols, reinterpret_cast<V*>(x));
  });
}

void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h,
                   cudaStream_t stream) {
  if (branches == 0) return;
  LaunchRowwise(rows, dim, delta, h, [&](auto v, int cols, unsigned blocks) {
    using V = decltype(v);
    AddToBranchesKernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const V*>(delta), rows,
                                                         branches, cols, reinterpret_cast<V*>(h));
  });
}

void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out,
                cudaStream_t stream) {
  LaunchRowwise(n, dim, x, out, [&](auto v, int cols, unsigned blocks) {
    using V = decltype(v);
    GatherRowsKernel<<<blocks, kThreads, 0, stream>>>(reinterpret_cast<const V*>(x), index, n, cols,
                                                      reinterpret_cast<V*>(out));
  });
}

void StoreRows(const float* src, int64_t rows, int dim, float* const* dst, cudaStream_t stream) {
  if (rows == 0 || dim == 0) return;
  const bool src_vec = dim % 4 == 0 && reinterpret_cast<uintptr_t>(src) % sizeof(float4) == 0;
  StoreRowsKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(src, dim, src_vec, dst);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
