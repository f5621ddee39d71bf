// The product-key memory ops of the CPU backend (backend.h, DESIGN §2.4) but the scores
// (product_key_scores.cc): loops over product_key_math.h's row math, parallel over rows. Every
// output value is computed by the same sequence of float operations whatever the batch and however
// the thread pool splits it, so a row's result never depends on the other rows of the call.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <functional>
#include <vector>

#include "engram/kernels/check.h"
#include "engram/kernels/product_key_math.h"
#include "engram/kernels/row_math.h"
#include "kernels/cpu/cpu_backend.h"

namespace engram {
namespace {

// Work items per chunk of a parallel loop, so that a chunk is worth a thread's wake-up.
constexpr int64_t kChunkWork = 1 << 15;

int64_t Grain(int64_t work_per_item) {
  return std::max<int64_t>(1, kChunkWork / std::max<int64_t>(work_per_item, 1));
}

// Up to this k a row is scanned once against a min-heap of its k best keys; beyond, the keys of
// the whole row are partitioned (std::nth_element). Both pick the same k by the same total order.
constexpr int kHeapTopK = 128;

// heap[0..k) is a min-heap of keys (its worst at the top): replaces the top by `key`, larger
// than it, and sifts it down.
void ReplaceWorst(uint64_t* heap, int k, uint64_t key) {
  int i = 0;
  for (;;) {
    int child = 2 * i + 1;
    if (child >= k) break;
    if (child + 1 < k && heap[child + 1] < heap[child]) ++child;
    if (heap[child] >= key) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = key;
}

void RowTopKRow(const float* x, int64_t n, int k, float* values, int32_t* index,
                std::vector<uint64_t>& keys) {
  keys.clear();
  const auto worse = std::greater<uint64_t>();  // makes the heap's top its worst key
  if (k <= kHeapTopK && static_cast<int64_t>(k) * 4 <= n) {
    for (int64_t i = 0; i < k; ++i) keys.push_back(TopKKey(x[i], static_cast<uint32_t>(i)));
    std::make_heap(keys.begin(), keys.end(), worse);
    uint64_t threshold = keys.front();
    // Most values lose to the k-th best at a float compare: for a value and a threshold that
    // are not NaN, x < t as floats implies key(x) < key(t) (the reverse may fail at -0 == +0).
    float threshold_value = x[TopKKeyPosition(threshold)];
    for (int64_t i = k; i < n; ++i) {
      if (x[i] < threshold_value) continue;  // false for a NaN on either side
      const uint64_t key = TopKKey(x[i], static_cast<uint32_t>(i));
      if (key < threshold) continue;  // keys are distinct: never equal
      ReplaceWorst(keys.data(), k, key);
      threshold = keys.front();
      threshold_value = x[TopKKeyPosition(threshold)];
    }
  } else {
    keys.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) keys[i] = TopKKey(x[i], static_cast<uint32_t>(i));
    std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), worse);
    keys.resize(static_cast<size_t>(k));
  }
  std::sort(keys.begin(), keys.end(), worse);  // descending: best first
  for (int j = 0; j < k; ++j) {
    const uint32_t pos = TopKKeyPosition(keys[j]);
    values[j] = x[pos];
    index[j] = static_cast<int32_t>(pos);
  }
}

}  // namespace

void CpuBackend::RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
                         int32_t* index) {
  if (recorder_.Defer([=, this] { RowTopK(x, rows, n, k, values, index); })) return;
  ENGRAM_CHECK_MSG(k >= 0 && k <= n && n <= INT32_MAX, "RowTopK: k=%d of n=%" PRId64, k, n);
  if (k == 0) return;
  pool_.ParallelFor(rows, Grain(n), [&](int64_t r0, int64_t r1) {
    std::vector<uint64_t> keys;
    for (int64_t r = r0; r < r1; ++r)
      RowTopKRow(x + r * n, n, k, values + r * k, index + r * k, keys);
  });
}

void CpuBackend::ProductKeyCandidates(const ProductKeyCandidatesParams& p) {
  if (recorder_.Defer([=, this] { ProductKeyCandidates(p); })) return;
  const int k = p.knn;
  ENGRAM_CHECK_MSG(k >= 0 && k <= kMaxProductKeyKnn, "ProductKeyCandidates: knn=%d", k);
  if (k == 0) return;
  pool_.ParallelFor(p.groups, Grain(static_cast<int64_t>(k) * 8), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      int64_t* indices = p.indices + g * k;
      // The group's own output slots hold its sorted keys until they are decoded.
      ProductKeyCandidatesGroup(p.best_scores + g * 2 * k, p.best_ids + g * 2 * k, k, p.n_keys,
                                reinterpret_cast<uint64_t*>(indices), 1, p.weights + g * k,
                                indices);
    }
  });
}

void CpuBackend::WeightedRowSum(const WeightedRowSumParams& p) {
  if (recorder_.Defer([=, this] { WeightedRowSum(p); })) return;
  ENGRAM_CHECK_MSG(p.dtype == DType::kF32 || p.dtype == DType::kBF16 || p.dtype == DType::kF16 ||
                       p.dtype == DType::kF8E4M3,
                   "WeightedRowSum: unsupported dtype %d", static_cast<int>(p.dtype));
  const auto* packed = static_cast<const uint8_t*>(p.packed);
  const int64_t per_row = p.per_row;
  pool_.ParallelFor(p.rows, Grain(per_row * p.d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      WeightedPackedRowSum(packed, p.packed_bytes, p.dtype, p.d, p.rows_idx + r * per_row,
                           p.weights + r * per_row, p.per_row, p.out + r * p.d);
  });
}

void CpuBackend::SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) {
  if (recorder_.Defer([=, this] { SigmoidScaleRows(logit, rows, dim, x); })) return;
  pool_.ParallelFor(rows, Grain(dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float s = Sigmoid(logit[r]);
      float* xr = x + r * dim;
      for (int i = 0; i < dim; ++i) xr[i] = xr[i] * s;
    }
  });
}

}  // namespace engram
