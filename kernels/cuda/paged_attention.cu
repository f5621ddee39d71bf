// Paged causal GQA attention (CPU reference: CpuBackend::Attention). Two kernels and, for long
// contexts with few rows, a third:
//  1. StoreKv writes the step's k, v rows into their cache slots, so that a row sees the rows
//     before it in its own step exactly as the CPU does (it stores before it attends).
//  2. Attention: one block per (row, KV head, split). The block's warps take the split's
//     positions round-robin; each warp keeps, for every query head of the GQA group, an online
//     softmax state (row_math.h's SoftmaxPush) and the weighted sum of values in registers, so a
//     K/V row is read once for the whole group. Warps are then merged with SoftmaxMerge.
//  3. Combine (num_splits > 1, flash-decoding): merges the splits' partial states per head.
// Prefill chunks and decode rows share the kernels: each row attends to positions [0, pos].
// A tiled tensor-core prefill kernel (K/V tiles in shared memory reused across query rows) is
// the next step for long prompts; this one reads K/V through L2 once per row.
#include <cstdint>

#include "engram/kernels/check.h"
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxGroup = 8;  // query heads per KV head kept in registers
constexpr int kMinSplitPositions = 256;

// The sequence of a row: the last s with row_begin[s] <= row (an empty sequence shares its start
// with the next one, so "last" skips it).
__device__ int SeqOfRow(const int32_t* row_begin, int num_seqs, int64_t row) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (row_begin[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Float offset of position `pos` of sequence `s` in a cache of [blocks][block_size][kv_row].
__device__ __forceinline__ int64_t SlotOffset(const PagedAttentionParams& p, int s, int64_t pos,
                                              int64_t kv_row) {
  const int32_t block =
      p.block_tables[static_cast<int64_t>(s) * p.block_table_stride + pos / p.block_size];
  return (static_cast<int64_t>(block) * p.block_size + pos % p.block_size) * kv_row;
}

__global__ void StoreKvKernel(PagedAttentionParams p) {
  const int64_t r = blockIdx.x;
  const int s = SeqOfRow(p.row_begin, p.num_seqs, r);
  const int64_t pos = p.pos_begin[s] + (r - p.row_begin[s]);
  const int64_t kv_row = static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  const int64_t slot = SlotOffset(p, s, pos, kv_row);
  for (int64_t i = threadIdx.x; i < kv_row; i += blockDim.x) {
    p.k_cache[slot + i] = p.k[r * kv_row + i];
    p.v_cache[slot + i] = p.v[r * kv_row + i];
  }
}

// kDpl: head dimensions per lane (lane l holds dims l, l + 32, ...), so head_dim <= 32 * kDpl.
template <int kDpl>
__global__ void __launch_bounds__(kThreads)
    AttentionKernel(PagedAttentionParams p, int64_t split_len) {
  extern __shared__ float smem[];  // [kWarps][group][2 + head_dim]: max, sum, acc
  const int64_t r = blockIdx.x;
  const int g = blockIdx.y;
  const int split = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int hd = p.head_dim, group = p.num_heads / p.num_kv_heads;
  const int64_t kv_row = static_cast<int64_t>(p.num_kv_heads) * hd;
  const int s = SeqOfRow(p.row_begin, p.num_seqs, r);
  const int64_t pos = p.pos_begin[s] + (r - p.row_begin[s]);
  const int64_t begin = static_cast<int64_t>(split) * split_len;
  const int64_t end = begin + split_len < pos + 1 ? begin + split_len : pos + 1;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  const int head0 = g * group;

  float qv[kMaxGroup][kDpl], acc[kMaxGroup][kDpl];
  SoftmaxState st[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    st[h] = SoftmaxEmpty();
#pragma unroll
    for (int j = 0; j < kDpl; ++j) {
      const int dim = lane + 32 * j;
      qv[h][j] = h < group && dim < hd ? p.q[(r * p.num_heads + head0 + h) * hd + dim] : 0.f;
      acc[h][j] = 0.f;
    }
  }

  for (int64_t t = begin + warp; t < end; t += kWarps) {
    const int64_t off = SlotOffset(p, s, t, kv_row) + static_cast<int64_t>(g) * hd;
    float kk[kDpl], vv[kDpl];
#pragma unroll
    for (int j = 0; j < kDpl; ++j) {
      const int dim = lane + 32 * j;
      kk[j] = dim < hd ? p.k_cache[off + dim] : 0.f;
      vv[j] = dim < hd ? p.v_cache[off + dim] : 0.f;
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) break;  // uniform over the block: no divergent shuffles
      float dot = 0.f;
#pragma unroll
      for (int j = 0; j < kDpl; ++j) dot += qv[h][j] * kk[j];
      dot = WarpSum(dot);
      float w;
      const float c = SoftmaxPush(&st[h], dot * scale, &w);
#pragma unroll
      for (int j = 0; j < kDpl; ++j) acc[h][j] = acc[h][j] * c + w * vv[j];
    }
  }

  const int stride = hd + 2;
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) break;
    float* mine = smem + (warp * group + h) * stride;
    if (lane == 0) {
      mine[0] = st[h].max;
      mine[1] = st[h].sum;
    }
#pragma unroll
    for (int j = 0; j < kDpl; ++j) {
      const int dim = lane + 32 * j;
      if (dim < hd) mine[2 + dim] = acc[h][j];
    }
  }
  __syncthreads();

  for (int e = threadIdx.x; e < group * hd; e += kThreads) {
    const int h = e / hd, dim = e % hd;
    SoftmaxState total = SoftmaxEmpty();
    float a = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      const float* part = smem + (w * group + h) * stride;
      float sa, sb;
      SoftmaxMerge(&total, SoftmaxState{part[0], part[1]}, &sa, &sb);
      a = a * sa + part[2 + dim] * sb;
    }
    const int64_t head = r * p.num_heads + head0 + h;
    if (p.num_splits == 1) {
      // One split covers [0, pos], which holds at least position pos: total.sum > 0.
      p.out[head * hd + dim] = a * (1.0f / total.sum);
    } else {
      float* part = static_cast<float*>(p.workspace) + (head * p.num_splits + split) * stride;
      if (dim == 0) {
        part[0] = total.max;
        part[1] = total.sum;
      }
      part[2 + dim] = a;
    }
  }
}

__global__ void CombineKernel(PagedAttentionParams p) {
  const int64_t head = blockIdx.x;  // row * num_heads + h
  const int hd = p.head_dim, stride = hd + 2;
  const float* parts = static_cast<const float*>(p.workspace) + head * p.num_splits * stride;
  for (int dim = threadIdx.x; dim < hd; dim += blockDim.x) {
    SoftmaxState total = SoftmaxEmpty();
    float a = 0.f;
    for (int sp = 0; sp < p.num_splits; ++sp) {
      const float* part = parts + sp * stride;
      float sa, sb;
      SoftmaxMerge(&total, SoftmaxState{part[0], part[1]}, &sa, &sb);
      a = a * sa + part[2 + dim] * sb;
    }
    p.out[head * hd + dim] = a * (1.0f / total.sum);
  }
}

template <int kDpl>
void LaunchAttention(const PagedAttentionParams& p, int64_t split_len, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.num_rows), static_cast<unsigned>(p.num_kv_heads),
                  static_cast<unsigned>(p.num_splits));
  const int group = p.num_heads / p.num_kv_heads;
  const size_t smem = sizeof(float) * kWarps * group * (p.head_dim + 2);
  AttentionKernel<kDpl><<<grid, kThreads, smem, stream>>>(p, split_len);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace

int ChooseAttentionSplits(int64_t num_rows, int num_kv_heads, int64_t max_context, int num_sms) {
  const int64_t blocks = num_rows * num_kv_heads;
  if (blocks <= 0 || blocks >= 2 * static_cast<int64_t>(num_sms)) return 1;
  int64_t splits = CeilDiv(2 * static_cast<int64_t>(num_sms), blocks);
  const int64_t by_length = CeilDiv(max_context, kMinSplitPositions);
  if (splits > by_length) splits = by_length;
  if (splits > 32) splits = 32;
  return splits < 1 ? 1 : static_cast<int>(splits);
}

size_t PagedAttentionWorkspaceBytes(int64_t num_rows, int num_heads, int head_dim, int num_splits) {
  if (num_splits <= 1) return 0;
  return sizeof(float) * static_cast<size_t>(num_rows) * num_heads * num_splits * (head_dim + 2);
}

void PagedAttention(const PagedAttentionParams& p, cudaStream_t stream) {
  ENGRAM_CHECK(p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0);
  ENGRAM_CHECK_MSG(p.num_heads / p.num_kv_heads <= kMaxGroup, "GQA group %d > %d",
                   p.num_heads / p.num_kv_heads, kMaxGroup);
  ENGRAM_CHECK_MSG(p.head_dim > 0 && p.head_dim <= 256, "head_dim %d outside (0, 256]", p.head_dim);
  ENGRAM_CHECK(p.num_splits >= 1);
  ENGRAM_CHECK(p.num_splits == 1 || (p.workspace != nullptr && p.max_context > 0));
  if (p.num_rows == 0) return;
  StoreKvKernel<<<static_cast<unsigned>(p.num_rows), kThreads, 0, stream>>>(p);
  ENGRAM_CUDA_CHECK_LAUNCH();
  // One split: a length no position reaches. Several: equal shares of the longest context.
  const int64_t split_len =
      p.num_splits == 1 ? (int64_t{1} << 62) : CeilDiv(p.max_context, p.num_splits);
  if (p.head_dim <= 32) {
    LaunchAttention<1>(p, split_len, stream);
  } else if (p.head_dim <= 64) {
    LaunchAttention<2>(p, split_len, stream);
  } else if (p.head_dim <= 128) {
    LaunchAttention<4>(p, split_len, stream);
  } else {
    LaunchAttention<8>(p, split_len, stream);
  }
  if (p.num_splits > 1) {
    CombineKernel<<<static_cast<unsigned>(p.num_rows * p.num_heads), 128, 0, stream>>>(p);
    ENGRAM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace engram::cuda
