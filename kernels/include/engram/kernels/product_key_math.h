// Row math of product-key memory (DESIGN §2.4 steps 3-7), written once for both backends like
// row_math.h: the sub-key dot products, the order top-k selections rank by, the k x k candidate
// selection of one (row, head) group with its float32 softmax, the weighted sum of packed value
// rows, and the output gate's sigmoid (row_math.h's Sigmoid). CpuBackend (cpu/product_key_ops.cc)
// calls these in its loops and the CUDA kernels (cuda/product_key.cu) per thread, so the CPU
// tests cover the GPU's math.
//
// Same bits on both backends. The scores decide discrete choices (which value rows a token
// reads), so a near-tie must break the same way on the CPU and the GPU, and whatever the batch.
// Every sum here is therefore a fixed sequence of separately rounded float operations:
// MulAddRounded keeps nvcc from contracting a multiply-add into an FMA (it would by default)
// and the host build never contracts (ISO C++, -ffp-contract=off for the kernels). Only expf
// (in the softmax and the sigmoid) differs between the host's libm and the device.
#pragma once

#include <cmath>
#include <cstdint>

#include "engram/kernels/dtype.h"
#include "engram/kernels/host_device.h"
#include "engram/kernels/row_math.h"

namespace engram {

// acc + a * b with the product rounded on its own (no FMA), on the host and the device alike.
ENGRAM_HD float MulAddRounded(float acc, float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(acc, __fmul_rn(a, b));
#else
  const float p = a * b;  // a statement of its own: never contracted with the add
  return acc + p;
#endif
}

// Sub-key scores (step 3). acc[t] += sum_j q[j] * key_t[j] for t < kKeys, j < n in ascending
// order, value j of key t at keys[t * key_stride + j * value_stride]: each key is its own chain
// of MulAddRounded, so a key's score depends neither on kKeys nor on the layout nor on how n is
// cut into consecutive pieces. The CPU runs 16 keys at once from a transposed copy, so that the
// chains share vector registers (cpu/product_key_scores.cc); the GPU gives each key a lane and
// streams its values through shared memory in chunks. With acc = 0 and the whole half, this is
// ProductKeyScoresParams's dot product.
template <int kKeys>
ENGRAM_HD void SubKeyDotsAccumulate(float* acc, const float* q, const float* keys,
                                    int64_t key_stride, int64_t value_stride, int n) {
  float a[kKeys];  // local: kept in registers, never aliased by the stores of another key
  for (int t = 0; t < kKeys; ++t) a[t] = acc[t];
  for (int j = 0; j < n; ++j) {
    const float qj = q[j];
    const float* kj = keys + j * value_stride;
    for (int t = 0; t < kKeys; ++t) a[t] = MulAddRounded(a[t], qj, kj[t * key_stride]);
  }
  for (int t = 0; t < kKeys; ++t) acc[t] = a[t];
}

// --- the order of top-k selections ------------------------------------------------------------
// A total order on (value, position) pairs encoded as one unsigned 64-bit key, larger = better:
// value descending, then position ascending (the lower index, or the lower flat cell, first).
// Floats rank as they compare, -0 equal to +0; NaN (which compares with nothing) ranks above
// +inf, every NaN equal, as torch.topk ranks it. Positions are below 2^31, so no key is 0 and
// none is ~0: kernels use those as "none" and "no bound".

// The value's part: monotone in the float order, -0 and +0 the same, NaN highest.
ENGRAM_HD uint32_t TopKValueOrder(float v) {
  if (v != v) return 0xffffffffu;  // NaN
  if (v == 0.f) v = 0.f;           // -0 -> +0
  const uint32_t b = FloatToBits(v);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

ENGRAM_HD uint64_t TopKKey(float value, uint32_t position) {
  return (static_cast<uint64_t>(TopKValueOrder(value)) << 32) | (0x7fffffffu - position);
}

ENGRAM_HD uint32_t TopKKeyPosition(uint64_t key) {
  return 0x7fffffffu - static_cast<uint32_t>(key & 0xffffffffu);
}

// The best key below `bound` among x[i] for i = first, first + step, ... < n; 0 when there is
// none. A thread of the CUDA RowTopK scans its strided share of a row with it (product_key.cu).
ENGRAM_HD uint64_t TopKBestBelow(const float* x, int64_t n, int64_t first, int64_t step,
                                 uint64_t bound) {
  uint64_t best = 0;
  for (int64_t i = first; i < n; i += step) {
    const uint64_t key = TopKKey(x[i], static_cast<uint32_t>(i));
    if (key < bound && key > best) best = key;
  }
  return best;
}

// The largest k of ProductKeyCandidates (its flat cells a*k + b stay below 2^31).
inline constexpr int kMaxProductKeyKnn = 46340;

// --- candidates (steps 5-6) -------------------------------------------------------------------

// w[j] = softmax(s)[j] in float32: m = max s, e_j = expf(s_j - m), w_j = e_j / sum_j e_j with
// the sum in ascending j. w may alias s. A NaN score makes every weight NaN (as in torch).
ENGRAM_HD void ProductKeySoftmax(const float* s, int k, float* w) {
  float m = s[0];
  for (int j = 1; j < k; ++j) m = fmaxf(m, s[j]);
  float sum = 0.f;
  for (int j = 0; j < k; ++j) {
    const float e = expf(s[j] - m);
    w[j] = e;
    sum += e;
  }
  for (int j = 0; j < k; ++j) w[j] = w[j] / sum;
}

// ProductKeyCandidatesParams for one group: best_scores [2][k] (each half descending in the
// order above, as RowTopK leaves them), best_ids [2][k]; writes weights [k] and indices [k].
// `scratch` holds k keys, element i at scratch[i * scratch_stride]; it may be `indices` itself
// (stride 1; an int64_t array may be used as uint64_t).
//
// Exactly the k best of the k*k cells in the order above (score s1[a] + s2[b], flat cell a*k + b),
// found without scoring them all: with both halves descending, a cell ranks after every cell
// (a', b') != (a, b) with a' <= a and b' <= b (its score is no higher, float addition being
// monotone, and its flat cell is higher), so a cell among the k best has (a+1)(b+1) <= k, and
// along a row the cells come in order. That needs monotone sums, which only an infinity can
// break (inf + -inf is NaN, which ranks first): with one among the scores every cell is scored.
// The k best so far are kept sorted in `scratch` by insertion.
ENGRAM_HD void ProductKeyCandidatesGroup(const float* best_scores, const int32_t* best_ids, int k,
                                         int64_t n_keys, uint64_t* scratch, int scratch_stride,
                                         float* weights, int64_t* indices) {
  const float* s1 = best_scores;
  const float* s2 = best_scores + k;
  bool monotone = true;
  for (int i = 0; i < 2 * k; ++i) monotone = monotone && fabsf(best_scores[i]) != INFINITY;
  int count = 0;
  for (int a = 0; a < k; ++a) {
    const int b_end = monotone ? k / (a + 1) : k;
    for (int b = 0; b < b_end; ++b) {
      const uint64_t key = TopKKey(s1[a] + s2[b], static_cast<uint32_t>(a * k + b));
      if (count == k && key < scratch[(k - 1) * scratch_stride]) {
        if (monotone) break;  // the rest of this row ranks lower still
        continue;
      }
      int pos = count < k ? count++ : k - 1;
      for (; pos > 0 && scratch[(pos - 1) * scratch_stride] < key; --pos)
        scratch[pos * scratch_stride] = scratch[(pos - 1) * scratch_stride];
      scratch[pos * scratch_stride] = key;
    }
  }
  // count == k: row 0 alone has k cells. Each key is read before its slot of `indices` is written.
  for (int j = 0; j < k; ++j) {
    const uint32_t flat = TopKKeyPosition(scratch[j * scratch_stride]);
    const int a = static_cast<int>(flat) / k, b = static_cast<int>(flat) % k;
    weights[j] = s1[a] + s2[b];
    indices[j] = static_cast<int64_t>(best_ids[a]) * n_keys + best_ids[k + b];
  }
  ProductKeySoftmax(weights, k, weights);
}

// --- the weighted row sum (step 7) ------------------------------------------------------------
// out[i] = sum over j < count, in ascending j, of w[j] * value i of packed row ids[j] of `packed`
// (the table store's layout, row_math.h's DequantValue: d values in dtype, then d/32 ue8m0 scale
// bytes for fp8), accumulated from 0 with MulAddRounded. Row offsets are int64 (tables beyond
// 2^31 rows, or rows of many bytes).

// Value i alone: the form a kernel with one thread per output value calls.
ENGRAM_HD float WeightedPackedValue(const uint8_t* packed, int64_t packed_bytes, DType dtype, int d,
                                    const int64_t* ids, const float* w, int count, int i) {
  float acc = 0.f;
  for (int j = 0; j < count; ++j) {
    const uint8_t* row = packed + ids[j] * packed_bytes;
    // fp8 is one byte a value: its scales start d bytes in (unused for the other dtypes).
    acc = MulAddRounded(acc, w[j], DequantValue(row, row + d, dtype, i));
  }
  return acc;
}

template <DType kType>
ENGRAM_HD void AccumulatePackedRow(float* out, float w, const uint8_t* row, int d) {
  for (int i = 0; i < d; ++i)
    out[i] = MulAddRounded(out[i], w, DequantValue(row, row + d, kType, i));
}

// The whole row: the same operations for every value as WeightedPackedValue, with j outside so
// that a CPU loop streams each row once (and vectorises over i).
ENGRAM_HD void WeightedPackedRowSum(const uint8_t* packed, int64_t packed_bytes, DType dtype, int d,
                                    const int64_t* ids, const float* w, int count, float* out) {
  for (int i = 0; i < d; ++i) out[i] = 0.f;
  for (int j = 0; j < count; ++j) {
    const uint8_t* row = packed + ids[j] * packed_bytes;
    switch (dtype) {
      case DType::kF32:
        AccumulatePackedRow<DType::kF32>(out, w[j], row, d);
        break;
      case DType::kBF16:
        AccumulatePackedRow<DType::kBF16>(out, w[j], row, d);
        break;
      case DType::kF16:
        AccumulatePackedRow<DType::kF16>(out, w[j], row, d);
        break;
      case DType::kF8E4M3:
        AccumulatePackedRow<DType::kF8E4M3>(out, w[j], row, d);
        break;
      default:
        break;  // unreachable: dtypes are validated at load
    }
  }
}

}  // namespace engram
