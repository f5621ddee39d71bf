// The row-copy engine behind the gather paths and the device row cache: a persistent grid of
// warps copying packed rows with the widest loads the alignment allows (16 bytes for the usual
// 64..512-byte rows). Rows narrower than a warp's 32 x 16 bytes share a warp (lanes_per_row
// lanes each), and every sub-group keeps kUnroll rows in flight, loads before stores, so a
// handful of SMs covers the latency of reads that cross PCIe (~1-2 us) at full link speed.
//
// An addresser says where item i comes from and goes to:
//   __device__ int64_t Count() const;                              (may read device memory)
//   __device__ bool Get(int64_t i, const char** src, char** dst) const;  (false: skip item)
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.h"

namespace engram::cuda {

constexpr int kCopyThreads = 256;
constexpr int kCopyUnroll = 4;

template <typename Vec, typename Addr>
__global__ void __launch_bounds__(kCopyThreads)
    CopyRowsKernel(Addr addr, int64_t row_bytes, int lanes_per_row) {
  const int64_t count = addr.Count();
  const int lane = threadIdx.x & 31;
  const int sub = lane / lanes_per_row, sub_lane = lane % lanes_per_row;
  const int rows_per_warp = 32 / lanes_per_row;
  const int64_t vecs = row_bytes / static_cast<int64_t>(sizeof(Vec));
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  const int64_t per_pass = static_cast<int64_t>(rows_per_warp) * kCopyUnroll;
  for (int64_t base = warp * per_pass; base < count; base += warps * per_pass) {
    const Vec* src[kCopyUnroll];
    Vec* dst[kCopyUnroll];
    bool valid[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int64_t item = base + static_cast<int64_t>(u) * rows_per_warp + sub;
      const char* s = nullptr;
      char* d = nullptr;
      valid[u] = item < count && addr.Get(item, &s, &d);
      src[u] = reinterpret_cast<const Vec*>(s);
      dst[u] = reinterpret_cast<Vec*>(d);
    }
    for (int64_t v = sub_lane; v < vecs; v += lanes_per_row) {
      Vec tmp[kCopyUnroll];
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u)
        if (valid[u]) tmp[u] = src[u][v];
#pragma unroll
      for (int u = 0; u < kCopyUnroll; ++u)
        if (valid[u]) dst[u][v] = tmp[u];
    }
  }
}

// The widest of 16/8/4/2/1 bytes dividing every address the copy forms.
inline int CopyVecBytes(int64_t row_bytes, uintptr_t src_base, uintptr_t dst_base,
                        int64_t dst_stride) {
  const uint64_t all =
      static_cast<uint64_t>(row_bytes) | src_base | dst_base | static_cast<uint64_t>(dst_stride);
  for (int v = 16; v > 1; v /= 2)
    if (all % v == 0) return v;
  return 1;
}

template <typename Addr>
void LaunchCopyRows(const Addr& addr, int64_t row_bytes, int vec_bytes, int blocks,
                    cudaStream_t stream) {
  const int64_t vecs = row_bytes / vec_bytes;
  int lanes = 1;
  while (lanes < 32 && lanes < vecs) lanes *= 2;
  switch (vec_bytes) {
    case 16:
      CopyRowsKernel<uint4><<<blocks, kCopyThreads, 0, stream>>>(addr, row_bytes, lanes);
      break;
    case 8:
      CopyRowsKernel<uint2><<<blocks, kCopyThreads, 0, stream>>>(addr, row_bytes, lanes);
      break;
    case 4:
      CopyRowsKernel<uint32_t><<<blocks, kCopyThreads, 0, stream>>>(addr, row_bytes, lanes);
      break;
    case 2:
      CopyRowsKernel<uint16_t><<<blocks, kCopyThreads, 0, stream>>>(addr, row_bytes, lanes);
      break;
    default:
      CopyRowsKernel<uint8_t><<<blocks, kCopyThreads, 0, stream>>>(addr, row_bytes, lanes);
  }
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
