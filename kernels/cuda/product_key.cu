// Product-key memory on the device (DESIGN §2.4 steps 3-7; CPU reference: cpu/product_key_ops.cc).
// Every value goes through product_key_math.h's row math with the CPU's roundings in the CPU's
// order, so the results are the CPU's bit for bit (expf aside: the softmax and the sigmoid):
//  - ProductKeyScores: a block computes 32 keys (one per lane) of one (head, half) for 8 rows (one
//    per warp), streaming keys and queries through shared memory 32 values at a time, each lane
//    continuing its own key's ascending chain (SubKeyDotsAccumulate) over the pieces.
//  - RowTopK: one block per row, k rounds of a block-wide maximum over product_key_math.h's
//    64-bit keys (value, then lower index; all distinct). Each thread keeps the best key among
//    its strided share of the row that lies below the last key taken. A round takes the
//    maximum of those, the next key overall; only its owner's best is now taken, and only the
//    owner rescans its share: every other thread's best is still the best of its share below
//    the new bound, since no key lies between two consecutive ones. The keys thus come out in
//    exactly the order the CPU sorts them in.
//  - ProductKeyCandidates: one thread per group runs the CPU's ProductKeyCandidatesGroup, its
//    sorted list in shared memory (interleaved across the block's threads) for knn <= 64, in
//    the group's own `indices` slots beyond.
//  - WeightedRowSum: one block per output row, threads over d, each value's sum over j in order
//    (WeightedPackedValue, the per-value form of the CPU's WeightedPackedRowSum).
//  - SigmoidScaleRows: one thread per value.
#include "engram/kernels/product_key_math.h"
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

// --- sub-key scores ---------------------------------------------------------------------------

constexpr int kScoreKeys = 32;   // keys per block, one per lane
constexpr int kScoreRows = 8;    // rows per block, one per warp
constexpr int kScoreChunk = 32;  // values of a key (and of the query half) per pass
constexpr int kScoreThreads = kScoreKeys * kScoreRows;
static_assert(kScoreKeys == 32 && kScoreChunk == 32, "a lane per key and per query value");

// Grid: x = tiles of 32 keys, y = head * 2 + half, z = tiles of 8 rows (looped past 65535).
__global__ void __launch_bounds__(kScoreThreads)
    ProductKeyScoresKernel(ProductKeyScoresParams p, int64_t row_tiles) {
  // Row kk holds piece [j0, j0 + 32) of key key0 + kk; the pad makes a warp's reads of one
  // column (32 keys at one j) fall in 32 different banks.
  __shared__ float keys_s[kScoreKeys][kScoreChunk + 1];
  __shared__ float query_s[kScoreRows][kScoreChunk];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int half = p.k_dim / 2;
  const int line = static_cast<int>(blockIdx.y);  // head * 2 + s
  const int64_t key0 = static_cast<int64_t>(blockIdx.x) * kScoreKeys;
  const int64_t key = key0 + lane;
  const float* keys = p.keys + (line * p.n_keys + key0) * half;
  const int64_t q_offset = static_cast<int64_t>(line / 2) * p.k_dim + (line % 2) * half;
  for (int64_t tile = blockIdx.z; tile < row_tiles; tile += gridDim.z) {
    const int64_t row = tile * kScoreRows + warp;
    const float* q = p.query + row * p.heads * p.k_dim + q_offset;
    float acc = 0.f;
    for (int j0 = 0; j0 < half; j0 += kScoreChunk) {
      const int len = min(kScoreChunk, half - j0);
      // Warp w loads key rows w, w + 8, ...: 32 consecutive floats each.
      for (int e = threadIdx.x; e < kScoreKeys * kScoreChunk; e += kScoreThreads) {
        const int kk = e / kScoreChunk, jj = e % kScoreChunk;
        keys_s[kk][jj] = key0 + kk < p.n_keys && jj < len
                             ? keys[static_cast<int64_t>(kk) * half + j0 + jj]
                             : 0.f;
      }
      query_s[warp][lane] = row < p.rows && lane < len ? q[j0 + lane] : 0.f;
      __syncthreads();
      SubKeyDotsAccumulate<1>(&acc, query_s[warp], keys_s[lane], 0, 1, len);
      __syncthreads();  // before the next pass overwrites the tiles
    }
    if (row < p.rows && key < p.n_keys) p.scores[(row * p.heads * 2 + line) * p.n_keys + key] = acc;
  }
}

// --- row top-k --------------------------------------------------------------------------------

constexpr int kTopKThreads = 256;

__device__ __forceinline__ uint64_t WarpMax(uint64_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t other = __shfl_xor_sync(kFullWarp, v, o);
    v = other > v ? other : v;
  }
  return v;
}

// The maximum of v over the block, to every thread (BlockSum's shape: the leading barrier lets
// consecutive rounds share `scratch`, 32 values in shared memory).
__device__ __forceinline__ uint64_t BlockMax(uint64_t v, uint64_t* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return WarpMax(lane < warps ? scratch[lane] : uint64_t{0});
}

__global__ void __launch_bounds__(kTopKThreads)
    RowTopKKernel(const float* x, int64_t n, int k, float* values, int32_t* index) {
  __shared__ uint64_t scratch[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * n;
  uint64_t local = TopKBestBelow(xr, n, threadIdx.x, blockDim.x, ~uint64_t{0});  // ~0: no bound
  for (int j = 0; j < k; ++j) {
    const uint64_t best = BlockMax(local, scratch);  // nonzero: n - j > 0 keys remain
    if (threadIdx.x == 0) {
      const uint32_t pos = TopKKeyPosition(best);
      values[r * k + j] = xr[pos];
      index[r * k + j] = static_cast<int32_t>(pos);
    }
    // Exactly one thread owns `best` (keys are distinct).
    if (local == best) local = TopKBestBelow(xr, n, threadIdx.x, blockDim.x, best);
  }
}

// --- candidates -------------------------------------------------------------------------------

constexpr int kCandidateThreads = 64;
constexpr int kSharedScratchKnn = 64;  // 64 threads x 64 keys x 8 bytes = 32 KiB

__global__ void __launch_bounds__(kCandidateThreads)
    ProductKeyCandidatesKernel(ProductKeyCandidatesParams p, bool shared_scratch) {
  extern __shared__ uint64_t scratch_s[];  // [knn][kCandidateThreads] when shared_scratch
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kCandidateThreads + threadIdx.x;
  if (g >= p.groups) return;
  const int k = p.knn;
  int64_t* indices = p.indices + g * k;
  uint64_t* scratch =
      shared_scratch ? scratch_s + threadIdx.x : reinterpret_cast<uint64_t*>(indices);
  ProductKeyCandidatesGroup(p.best_scores + g * 2 * k, p.best_ids + g * 2 * k, k, p.n_keys, scratch,
                            shared_scratch ? kCandidateThreads : 1, p.weights + g * k, indices);
}

// --- weighted row sum -------------------------------------------------------------------------

constexpr int kSumThreads = 256;

template <DType kType>
__global__ void __launch_bounds__(kSumThreads) WeightedRowSumKernel(WeightedRowSumParams p) {
  const int64_t r = blockIdx.x;
  const auto* packed = static_cast<const uint8_t*>(p.packed);
  const int64_t* ids = p.rows_idx + r * p.per_row;
  const float* w = p.weights + r * p.per_row;
  float* out = p.out + r * p.d;
  for (int i = threadIdx.x; i < p.d; i += kSumThreads)
    out[i] = WeightedPackedValue(packed, p.packed_bytes, kType, p.d, ids, w, p.per_row, i);
}

// --- output gate ------------------------------------------------------------------------------

constexpr int kGateThreads = 256;

__global__ void SigmoidScaleRowsKernel(const float* logit, int64_t rows, int dim, float* x) {
  const int64_t n = rows * dim;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[t] = x[t] * Sigmoid(logit[t / dim]);
}

}  // namespace

void ProductKeyScores(const ProductKeyScoresParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.n_keys == 0 || p.heads == 0) return;
  const int64_t row_tiles = CeilDiv(p.rows, kScoreRows);
  const dim3 grid(static_cast<unsigned>(CeilDiv(p.n_keys, kScoreKeys)),
                  static_cast<unsigned>(2 * p.heads),
                  static_cast<unsigned>(row_tiles < 65535 ? row_tiles : 65535));
  ProductKeyScoresKernel<<<grid, kScoreThreads, 0, stream>>>(p, row_tiles);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values, int32_t* index,
             cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  RowTopKKernel<<<static_cast<unsigned>(rows), kTopKThreads, 0, stream>>>(x, n, k, values, index);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void ProductKeyCandidates(const ProductKeyCandidatesParams& p, cudaStream_t stream) {
  if (p.groups == 0 || p.knn == 0) return;
  const bool shared_scratch = p.knn <= kSharedScratchKnn;
  const size_t smem =
      shared_scratch ? static_cast<size_t>(p.knn) * kCandidateThreads * sizeof(uint64_t) : 0;
  ProductKeyCandidatesKernel<<<static_cast<unsigned>(CeilDiv(p.groups, kCandidateThreads)),
                               kCandidateThreads, smem, stream>>>(p, shared_scratch);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void WeightedRowSum(const WeightedRowSumParams& p, cudaStream_t stream) {
  if (p.rows == 0 || p.d == 0) return;
  const unsigned blocks = static_cast<unsigned>(p.rows);
  switch (p.dtype) {
    case DType::kF32:
      WeightedRowSumKernel<DType::kF32><<<blocks, kSumThreads, 0, stream>>>(p);
      break;
    case DType::kBF16:
      WeightedRowSumKernel<DType::kBF16><<<blocks, kSumThreads, 0, stream>>>(p);
      break;
    case DType::kF16:
      WeightedRowSumKernel<DType::kF16><<<blocks, kSumThreads, 0, stream>>>(p);
      break;
    case DType::kF8E4M3:
      WeightedRowSumKernel<DType::kF8E4M3><<<blocks, kSumThreads, 0, stream>>>(p);
      break;
    default:
      return;  // the backend validates the dtype
  }
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x, cudaStream_t stream) {
  const int64_t n = rows * dim;
  if (n == 0) return;
  SigmoidScaleRowsKernel<<<GridStrideBlocks(n, kGateThreads), kGateThreads, 0, stream>>>(
      logit, rows, dim, x);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
