// Device sampling (see sampling.h for the contract). Four launches:
//  1. Penalties: one block per row; the repetition pass and then the presence/frequency pass,
//     each over distinct tokens (no two threads touch one logit), with sampling_math.h's
//     float operations.
//  2. Keys: (row << 32 | DescendingLogitKey(logit), token id) pairs for every logit.
//  3. One device-wide stable radix sort of the pairs (CUB): rows stay apart because the row is
//     in the key's high bits, and the sort's stability keeps ties in ascending id order, the
//     sampler's order. Cheaper than a segmented sort when rows are few and long.
//  4. Pick: one block per row walks its sorted candidates with block-wide sums and scans in
//     double (the engine sums in double too) and draws with the row's xoshiro256** stream.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <cstdio>

#include "engram/kernels/check.h"
#include "engram/kernels/sampling_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/sampling.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;  // candidates per thread per scan chunk
constexpr int kChunk = kThreads * kItems;
constexpr size_t kAlign = 256;

size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

int RowBits(int rows) {
  int bits = 0;
  while ((int64_t{1} << bits) < rows) ++bits;
  return bits;
}

struct Workspace {
  uint64_t* keys_in;
  uint64_t* keys_out;
  int32_t* ids_in;
  int32_t* ids_out;
  void* cub_temp;
  size_t cub_bytes;
};

size_t CubSortBytes(int64_t n, int end_bit) {
  size_t bytes = 0;
  ENGRAM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint64_t*>(nullptr), static_cast<uint64_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, 0, end_bit));
  return bytes;
}

Workspace Carve(void* base, int64_t n, size_t cub_bytes) {
  char* p = static_cast<char*>(base);
  Workspace w;
  w.keys_in = reinterpret_cast<uint64_t*>(p);
  p += AlignUp(sizeof(uint64_t) * n);
  w.keys_out = reinterpret_cast<uint64_t*>(p);
  p += AlignUp(sizeof(uint64_t) * n);
  w.ids_in = reinterpret_cast<int32_t*>(p);
  p += AlignUp(sizeof(int32_t) * n);
  w.ids_out = reinterpret_cast<int32_t*>(p);
  p += AlignUp(sizeof(int32_t) * n);
  w.cub_temp = p;
  w.cub_bytes = cub_bytes;
  return w;
}

__global__ void __launch_bounds__(kThreads) PenaltyKernel(SampleParams p) {
  const int row = blockIdx.x;
  const SamplingRowParams rp = p.row_params[row];
  float* logits = p.logits + static_cast<int64_t>(row) * p.vocab;
  if (rp.repetition_penalty != 1.0f && p.seen_offsets != nullptr) {
    for (int i = p.seen_offsets[row] + threadIdx.x; i < p.seen_offsets[row + 1]; i += blockDim.x) {
      const int32_t t = p.seen_tokens[i];
      if (t >= 0 && t < p.vocab) logits[t] = RepetitionPenalized(logits[t], rp.repetition_penalty);
    }
  }
  __syncthreads();  // a token can be in both lists: repetition first, as the engine does
  if ((rp.presence_penalty != 0.0f || rp.frequency_penalty != 0.0f) && p.count_offsets != nullptr) {
    for (int i = p.count_offsets[row] + threadIdx.x; i < p.count_offsets[row + 1];
         i += blockDim.x) {
      const int32_t t = p.count_tokens[i];
      if (t >= 0 && t < p.vocab)
        logits[t] = PresenceFrequencyPenalized(logits[t], rp.presence_penalty, rp.frequency_penalty,
                                               p.count_values[i]);
    }
  }
}

__global__ void KeysKernel(const float* logits, int vocab, int64_t n, uint64_t* keys,
                           int32_t* ids) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t row = static_cast<uint64_t>(i / vocab);
    keys[i] = (row << 32) | DescendingLogitKey(logits[i]);
    ids[i] = static_cast<int32_t>(i % vocab);
  }
}

// The smallest `candidate` of the block (INT_MAX when no thread has one).
__device__ int BlockMin(int candidate, int* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    candidate = min(candidate, __shfl_xor_sync(kFullWarp, candidate, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = candidate;
  __syncthreads();
  int v = lane < kThreads / 32 ? scratch[lane] : INT_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(kFullWarp, v, o));
  return v;
}

__device__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullWarp, v, o));
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = lane < kThreads / 32 ? scratch[lane] : -INFINITY;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(kFullWarp, m, o));
  return m;
}

// The first index whose running total of f(i) over [0, n) satisfies hit(prefix): a block-wide
// inclusive scan, one chunk of kChunk candidates at a time, stopping at the first chunk with a
// hit. Returns INT_MAX when none does. Every thread gets the result.
template <typename F, typename Hit>
__device__ int FirstPrefixHit(int n, F f, Hit hit) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int min_scratch[32];
  double carry = 0.0;
  for (int base = 0; base < n; base += kChunk) {
    double items[kItems];
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int i = base + threadIdx.x * kItems + j;
      items[j] = i < n ? f(i) : 0.0;
    }
    double chunk_total;
    Scan(scan_storage).InclusiveSum(items, items, chunk_total);
    int found = INT_MAX;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int i = base + threadIdx.x * kItems + j;
      if (i < n && found == INT_MAX && hit(carry + items[j])) found = i;
    }
    found = BlockMin(found, min_scratch);
    if (found != INT_MAX) return found;
    carry += chunk_total;
    __syncthreads();  // scan_storage is reused by the next chunk
  }
  return INT_MAX;
}

__global__ void __launch_bounds__(kThreads) PickKernel(SampleParams p, const int32_t* sorted_ids) {
  __shared__ double dscratch[32];
  __shared__ float fscratch[32];
  __shared__ int iscratch[32];
  const int row = blockIdx.x;
  const SamplingRowParams rp = p.row_params[row];
  const float* logits = p.logits + static_cast<int64_t>(row) * p.vocab;
  const int n = p.vocab;

  if (rp.temperature <= 0.0f) {
    // Greedy: the largest logit, the lowest id among equals (std::max_element's first).
    float best = -INFINITY;
    int best_id = INT_MAX;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
      if (logits[i] > best || best_id == INT_MAX) {
        best = logits[i];
        best_id = i;
      }
    const float m = BlockMax(best, fscratch);
    const int id = BlockMin(best == m ? best_id : INT_MAX, iscratch);
    if (threadIdx.x == 0) p.tokens[row] = id;
    return;
  }

  if (sorted_ids == nullptr) {  // all_greedy was set for a batch with a sampled row
    if (threadIdx.x == 0)
      printf("Sample: row %d has temperature %g but all_greedy is set\n", row, rp.temperature);
    __trap();
  }
  const int32_t* order = sorted_ids + static_cast<int64_t>(row) * n;
  int keep = rp.top_k > 0 && rp.top_k < n ? rp.top_k : n;
  const float mx = logits[order[0]];
  const float temp = rp.temperature;
  auto weight = [&](int i) { return CandidateWeight(logits[order[i]], mx, temp); };

  double part = 0.0;
  for (int i = threadIdx.x; i < keep; i += blockDim.x) part += weight(i);
  const double sum = BlockSum(part, dscratch);

  if (rp.top_p < 1.0f) {
    const double top_p = rp.top_p;
    const int cut = FirstPrefixHit(
        keep, [&](int i) { return static_cast<double>(weight(i)) / sum; },
        [&](double acc) { return acc >= top_p; });
    if (cut != INT_MAX) keep = cut + 1;
  }
  if (rp.min_p > 0.0f) {
    // Weights fall along the sorted order, so min-p keeps a prefix: up to the first weight
    // below the floor (never the top candidate).
    const float floor = rp.min_p * weight(0);
    int first_below = INT_MAX;
    for (int i = 1 + threadIdx.x; i < keep; i += blockDim.x)
      if (weight(i) < floor) {
        first_below = i;
        break;
      }
    const int cut = BlockMin(first_below, iscratch);
    if (cut != INT_MAX) keep = cut;
  }

  part = 0.0;
  for (int i = threadIdx.x; i < keep; i += blockDim.x) part += weight(i);
  const double total = BlockSum(part, dscratch);

  __shared__ double draw;
  if (threadIdx.x == 0) {
    Xoshiro256 st = p.rng[row];
    draw = XoshiroUniform(&st) * total;
    p.rng[row] = st;
  }
  __syncthreads();
  const double r = draw;
  const int pick = FirstPrefixHit(
      keep, [&](int i) { return static_cast<double>(weight(i)); },
      [&](double acc) { return acc > r; });
  if (threadIdx.x == 0) p.tokens[row] = order[pick != INT_MAX ? pick : keep - 1];
}

}  // namespace

size_t SampleWorkspaceBytes(int rows, int vocab) {
  const int64_t n = static_cast<int64_t>(rows) * vocab;
  return 2 * AlignUp(sizeof(uint64_t) * n) + 2 * AlignUp(sizeof(int32_t) * n) +
         AlignUp(CubSortBytes(n, 32 + RowBits(rows)));
}

void Sample(const SampleParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  ENGRAM_CHECK(p.vocab > 0 && static_cast<int64_t>(p.rows) * p.vocab < (int64_t{1} << 31));
  PenaltyKernel<<<p.rows, kThreads, 0, stream>>>(p);
  ENGRAM_CUDA_CHECK_LAUNCH();
  const int64_t n = static_cast<int64_t>(p.rows) * p.vocab;
  const int32_t* sorted_ids = nullptr;
  if (!p.all_greedy) {
    const int end_bit = 32 + RowBits(p.rows);
    const size_t cub_bytes = CubSortBytes(n, end_bit);
    const size_t need = SampleWorkspaceBytes(p.rows, p.vocab);
    ENGRAM_CHECK_MSG(p.workspace != nullptr && p.workspace_bytes >= need,
                     "sampling workspace of %zu bytes, needs %zu", p.workspace_bytes, need);
    Workspace w = Carve(p.workspace, n, cub_bytes);
    KeysKernel<<<GridStrideBlocks(n, kThreads), kThreads, 0, stream>>>(p.logits, p.vocab, n,
                                                                       w.keys_in, w.ids_in);
    ENGRAM_CUDA_CHECK_LAUNCH();
    size_t temp_bytes = w.cub_bytes;
    ENGRAM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(w.cub_temp, temp_bytes, w.keys_in, w.keys_out,
                                                      w.ids_in, w.ids_out, n, 0, end_bit, stream));
    sorted_ids = w.ids_out;
  }
  PickKernel<<<p.rows, kThreads, 0, stream>>>(p, sorted_ids);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
