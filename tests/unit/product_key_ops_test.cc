// The product-key memory ops of the CPU backend (backend.h, DESIGN §2.4 steps 3-7) against
// naive references written here: explicit loops for the scores and the weighted sums, a sort of
// the whole row or grid for the top-k selections, and a double-precision softmax. Outputs are
// poisoned (NaN, or the integer type's minimum) before every call, so a value an op forgot to
// write fails.
//
// Exactness. backend.h fixes every float32 sum's order (the scores: ascending index; the
// weighted sums: ascending j from 0), so those are compared bit for bit with the same loop
// written plainly here (the build never fuses a multiply-add: ISO C++, and -ffp-contract=off for
// the kernels). The top-k selections are discrete: indices exactly, values bit for bit. The
// softmax weights are compared with the exact softmax of the float scores, within the float
// bound derived at SoftmaxTolerance. The sigmoid gate is the same formula as here, bit for bit.
//
// Then the properties the model relies on: a row's results are bitwise the same whatever the
// batch and however many threads split it; the ops record into and replay from a step graph;
// they run on SeparateMemoryBackend without touching memory they were not given; and the
// per-thread forms of the row math that the CUDA kernels call (product_key_math.h) give the
// CPU's bits, so the CPU covers the GPU's math.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "engram/kernels/backend.h"
#include "engram/kernels/dtype.h"
#include "engram/kernels/product_key_math.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/unit/separate_memory_backend.h"

namespace engram {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // float32 unit roundoff

std::vector<float> RandomNormal(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Values on a coarse grid, so that many are equal (ties).
std::vector<float> RandomCoarse(size_t n, std::mt19937& rng, int levels) {
  std::uniform_int_distribution<int> d(0, levels - 1);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng)) * 0.5f - 1.0f;
  return v;
}

template <typename T>
std::vector<T> Poisoned(size_t n) {
  if constexpr (std::is_floating_point_v<T>)
    return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
  else
    return std::vector<T>(n, std::numeric_limits<T>::min());
}

// Index of the first element that differs bitwise (NaN payloads included), or -1.
int64_t FirstBitDifference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (FloatToBits(a[i]) != FloatToBits(b[i])) return static_cast<int64_t>(i);
  return -1;
}

#define EXPECT_SAME_BITS(a, b, what)                                                          \
  do {                                                                                        \
    const int64_t at_ = FirstBitDifference((a), (b));                                         \
    EXPECT_EQ(at_, -1) << what << ": first difference at " << at_ << ": "                     \
                       << (at_ >= 0 && static_cast<size_t>(at_) < (a).size() ? (a)[at_] : 0)  \
                       << " vs "                                                              \
                       << (at_ >= 0 && static_cast<size_t>(at_) < (b).size() ? (b)[at_] : 0); \
  } while (0)

// --- references -------------------------------------------------------------------------------

std::vector<float> RefScores(const std::vector<float>& query, const std::vector<float>& keys,
                             int64_t rows, int heads, int k_dim, int64_t n) {
  const int half = k_dim / 2;
  std::vector<float> out(static_cast<size_t>(rows * heads * 2 * n));
  for (int64_t r = 0; r < rows; ++r)
    for (int t = 0; t < heads; ++t)
      for (int s = 0; s < 2; ++s)
        for (int64_t i = 0; i < n; ++i) {
          const float* q = query.data() + r * heads * k_dim + t * k_dim + s * half;
          const float* k = keys.data() + ((t * 2 + s) * n + i) * half;
          float dot = 0.f;
          for (int j = 0; j < half; ++j) dot += q[j] * k[j];
          out[((r * heads + t) * 2 + s) * n + i] = dot;
        }
  return out;
}

// Ranks NaN above everything (every NaN equal) and otherwise as floats compare: the order
// product_key_math.h documents.
bool RefGreater(float a, float b) {
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return a > b;
}

// The row's positions in the op's order: a stable sort keeps equal values in index order.
std::vector<int32_t> RefTopK(const float* x, int64_t n, int k) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return RefGreater(x[a], x[b]); });
  order.resize(static_cast<size_t>(k));
  return order;
}

struct RefGroup {
  std::vector<int64_t> indices;
  std::vector<float> scores;    // of the chosen cells, best first
  std::vector<double> weights;  // exact softmax of `scores`
};

// Every cell of the k x k grid, stable-sorted by score (so ties keep the flat cell order).
RefGroup RefCandidates(const float* best_scores, const int32_t* best_ids, int k, int64_t n) {
  std::vector<float> cell(static_cast<size_t>(k) * k);
  for (int a = 0; a < k; ++a)
    for (int b = 0; b < k; ++b) cell[a * k + b] = best_scores[a] + best_scores[k + b];
  std::vector<int> order(cell.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return RefGreater(cell[x], cell[y]); });
  RefGroup g;
  for (int j = 0; j < k; ++j) {
    const int a = order[j] / k, b = order[j] % k;
    g.indices.push_back(static_cast<int64_t>(best_ids[a]) * n + best_ids[k + b]);
    g.scores.push_back(cell[order[j]]);
  }
  double m = -INFINITY, sum = 0;
  for (float s : g.scores) m = std::max<double>(m, s);
  for (float s : g.scores) sum += std::exp(s - m);
  for (float s : g.scores) g.weights.push_back(std::exp(s - m) / sum);
  return g;
}

// |w - exact| for a float32 softmax of k scores: d = s - max is rounded (u|d| absolute, so
// u|d| relative after exp), expf adds at most 1 ulp (2u), the sum of k positive terms (k-1)u
// plus its terms' own errors, the division u: (k + 4 + |d_j| + max|d|) u relative, doubled.
double SoftmaxTolerance(const RefGroup& g, int j) {
  const float m = *std::max_element(g.scores.begin(), g.scores.end(), RefGreater);
  double dmax = 0;
  for (float s : g.scores) dmax = std::max<double>(dmax, std::fabs(s - m));
  const double k = static_cast<double>(g.scores.size());
  return 2 * (k + 4 + std::fabs(g.scores[j] - m) + dmax) * kU * g.weights[j] + 1e-38;
}

// A packed value table as the table store lays it out: d values in dtype, then (fp8) d/32 ue8m0
// scale bytes, then padding, so that rows are strided by packed_bytes and not by their content.
struct PackedValues {
  DType dtype = DType::kF32;
  int d = 0;
  int64_t rows = 0;
  int64_t packed_bytes = 0;
  std::vector<uint8_t> bytes;

  // Value i of row r, decoded here with dtype.h's conversions alone.
  float Value(int64_t r, int i) const {
    const uint8_t* row = bytes.data() + r * packed_bytes;
    switch (dtype) {
      case DType::kF32: {
        float v;
        std::memcpy(&v, row + 4 * i, 4);
        return v;
      }
      case DType::kBF16:
      case DType::kF16: {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        return dtype == DType::kBF16 ? Bf16ToFloat(h) : F16ToFloat(h);
      }
      case DType::kF8E4M3:
        return Fp8E4M3ToFloat(row[i]) * Ue8m0ToFloat(row[d + i / kFp8BlockSize]);
      default:
        return NAN;
    }
  }
};

PackedValues MakePacked(DType dtype, int d, int64_t rows, std::mt19937& rng) {
  PackedValues t;
  t.dtype = dtype;
  t.d = d;
  t.rows = rows;
  const bool fp8 = dtype == DType::kF8E4M3;
  t.packed_bytes = int64_t{d} * DTypeSize(dtype) + (fp8 ? d / kFp8BlockSize : 0) + 12;
  t.bytes.assign(static_cast<size_t>(rows * t.packed_bytes), 0xab);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::uniform_int_distribution<int> scale(124, 130);  // 2^-3 .. 2^3
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = t.bytes.data() + r * t.packed_bytes;
    for (int i = 0; i < d; ++i) {
      const float v = nd(rng);
      switch (dtype) {
        case DType::kF32:
          std::memcpy(row + 4 * i, &v, 4);
          break;
        case DType::kBF16: {
          const uint16_t h = FloatToBf16(v);
          std::memcpy(row + 2 * i, &h, 2);
          break;
        }
        case DType::kF16: {
          const uint16_t h = FloatToF16(v);
          std::memcpy(row + 2 * i, &h, 2);
          break;
        }
        default:
          row[i] = FloatToFp8E4M3(v);
      }
    }
    if (fp8)
      for (int b = 0; b < d / kFp8BlockSize; ++b) row[d + b] = static_cast<uint8_t>(scale(rng));
  }
  return t;
}

std::vector<float> RefWeightedRowSum(const PackedValues& t, const std::vector<int64_t>& ids,
                                     const std::vector<float>& w, int64_t rows, int per_row) {
  std::vector<float> out(static_cast<size_t>(rows * t.d));
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < t.d; ++i) {
      float acc = 0.f;
      for (int j = 0; j < per_row; ++j)
        acc += w[r * per_row + j] * t.Value(ids[r * per_row + j], i);
      out[r * t.d + i] = acc;
    }
  return out;
}

// Random top-k lists of the two halves of `groups` groups, as RowTopK leaves them: each half
// sorted descending, with distinct sub-key ids below n.
void RandomBestLists(int64_t groups, int k, int64_t n, bool coarse, std::mt19937& rng,
                     std::vector<float>* scores, std::vector<int32_t>* ids) {
  scores->clear();
  ids->clear();
  std::vector<int32_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t g = 0; g < groups; ++g)
    for (int s = 0; s < 2; ++s) {
      std::vector<float> v = coarse ? RandomCoarse(k, rng, 4) : RandomNormal(k, rng, 2.f);
      std::sort(v.begin(), v.end(), RefGreater);
      scores->insert(scores->end(), v.begin(), v.end());
      std::shuffle(all.begin(), all.end(), rng);
      ids->insert(ids->end(), all.begin(), all.begin() + k);
    }
}

// --- the ops one by one -----------------------------------------------------------------------

TEST(ProductKeyOps, ScoresAreTheAscendingFloatDotOfEachHalf) {
  std::mt19937 rng(1);
  CpuBackend be(3);
  struct Shape {
    int64_t rows;
    int heads, k_dim;
    int64_t n;
  };
  // Halves of 37 and 5 values and key counts that are no multiple of the CPU's block of 8.
  for (const Shape& s : {Shape{5, 3, 74, 53}, Shape{1, 2, 10, 7}, Shape{9, 4, 64, 1000}}) {
    const auto query = RandomNormal(s.rows * s.heads * s.k_dim, rng);
    const auto keys = RandomNormal(s.heads * s.n * s.k_dim, rng);
    auto scores = Poisoned<float>(s.rows * s.heads * 2 * s.n);
    ProductKeyScoresParams p;
    p.rows = s.rows;
    p.heads = s.heads;
    p.k_dim = s.k_dim;
    p.n_keys = s.n;
    p.query = query.data();
    p.keys = keys.data();
    p.scores = scores.data();
    be.ProductKeyScores(p);
    EXPECT_SAME_BITS(
        scores, RefScores(query, keys, s.rows, s.heads, s.k_dim, s.n),
        "rows=" << s.rows << " heads=" << s.heads << " k_dim=" << s.k_dim << " n=" << s.n);
  }
}

void ExpectTopK(CpuBackend& be, const std::vector<float>& x, int64_t rows, int64_t n, int k,
                const std::string& what) {
  auto values = Poisoned<float>(rows * k);
  auto index = Poisoned<int32_t>(rows * k);
  be.RowTopK(x.data(), rows, n, k, values.data(), index.data());
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<int32_t> want = RefTopK(x.data() + r * n, n, k);
    const std::vector<int32_t> got(index.begin() + r * k, index.begin() + (r + 1) * k);
    ASSERT_EQ(got, want) << what << " row " << r;
    for (int j = 0; j < k; ++j)
      ASSERT_EQ(FloatToBits(values[r * k + j]), FloatToBits(x[r * n + want[j]]))
          << what << " row " << r << " j " << j;
  }
}

TEST(ProductKeyOps, RowTopKIsTheSortedPrefixOnRandomRows) {
  std::mt19937 rng(2);
  CpuBackend be(2);
  for (int64_t n : {1, 5, 100, 1000})
    for (int k : {1, 3, 32, 200, 1000}) {
      if (k > n) continue;
      const int64_t rows = 7;
      ExpectTopK(be, RandomNormal(rows * n, rng), rows, n, k,
                 "n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
}

TEST(ProductKeyOps, RowTopKBreaksTiesToTheLowerIndex) {
  std::mt19937 rng(3);
  CpuBackend be(2);
  for (int64_t n : {6, 64, 999})
    for (int k : {1, 4, 17, 64, 999}) {
      if (k > n) continue;
      const int64_t rows = 5;
      auto x = RandomCoarse(rows * n, rng, 3);  // three values: ties everywhere, k == n too
      // -0 and +0 are equal: neither ranks above the other.
      for (size_t i = 0; i < x.size(); i += 3)
        if (x[i] == 0.f) x[i] = -0.f;
      ExpectTopK(be, x, rows, n, k, "ties n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
  // All equal: the first k positions, in order.
  const std::vector<float> flat(50, 1.5f);
  ExpectTopK(be, flat, 1, 50, 50, "all equal");
}

TEST(ProductKeyOps, RowTopKOfLongRows) {
  std::mt19937 rng(4);
  CpuBackend be(2);
  const int64_t n = int64_t{1} << 20, rows = 2;
  // Values on a grid of 1/64: the top of a 2^20 row has many ties.
  auto x = RandomNormal(rows * n, rng, 2.f);
  for (auto& v : x) v = std::round(v * 64.f) / 64.f;
  for (int k : {1, 64, 300}) {  // 64: the heap path; 300: the partition path
    auto values = Poisoned<float>(rows * k);
    auto index = Poisoned<int32_t>(rows * k);
    be.RowTopK(x.data(), rows, n, k, values.data(), index.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * n;
      std::vector<int32_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
        return xr[a] > xr[b] || (xr[a] == xr[b] && a < b);
      });
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(index[r * k + j], order[j]) << "k=" << k << " row " << r << " j " << j;
        ASSERT_EQ(values[r * k + j], xr[order[j]]);
      }
    }
  }
}

// Not part of backend.h's contract, but fixed so that both backends agree on any input: NaN
// ranks above +inf (as in torch.topk), NaNs in index order.
TEST(ProductKeyOps, RowTopKRanksNaNFirstThenInfinity) {
  CpuBackend be(1);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = INFINITY;
  const std::vector<float> x = {1.f, -inf, nan, inf, 2.f, nan, -1.f, inf};
  ExpectTopK(be, x, 1, 8, 8, "specials");
  auto values = Poisoned<float>(8);
  auto index = Poisoned<int32_t>(8);
  be.RowTopK(x.data(), 1, 8, 8, values.data(), index.data());
  EXPECT_EQ(index, (std::vector<int32_t>{2, 5, 3, 7, 4, 0, 6, 1}));
}

void ExpectCandidates(CpuBackend& be, const std::vector<float>& best_scores,
                      const std::vector<int32_t>& best_ids, int64_t groups, int k, int64_t n,
                      bool check_weights, const std::string& what) {
  auto weights = Poisoned<float>(groups * k);
  auto indices = Poisoned<int64_t>(groups * k);
  ProductKeyCandidatesParams p;
  p.groups = groups;
  p.knn = k;
  p.n_keys = n;
  p.best_scores = best_scores.data();
  p.best_ids = best_ids.data();
  p.weights = weights.data();
  p.indices = indices.data();
  be.ProductKeyCandidates(p);
  for (int64_t g = 0; g < groups; ++g) {
    const RefGroup want =
        RefCandidates(best_scores.data() + g * 2 * k, best_ids.data() + g * 2 * k, k, n);
    const std::vector<int64_t> got(indices.begin() + g * k, indices.begin() + (g + 1) * k);
    ASSERT_EQ(got, want.indices) << what << " group " << g;
    if (!check_weights) continue;
    double sum = 0, tolerance = 0;
    for (int j = 0; j < k; ++j) {
      ASSERT_NEAR(weights[g * k + j], want.weights[j], SoftmaxTolerance(want, j))
          << what << " group " << g << " j " << j;
      sum += weights[g * k + j];
      tolerance += SoftmaxTolerance(want, j);
    }
    EXPECT_NEAR(sum, 1.0, tolerance) << what << " group " << g;
  }
}

TEST(ProductKeyOps, CandidatesAreTheBestCellsOfTheGridWithTheirSoftmax) {
  std::mt19937 rng(5);
  CpuBackend be(2);
  const int64_t n = 1000, groups = 6;
  std::vector<float> scores;
  std::vector<int32_t> ids;
  for (int k : {1, 2, 5, 16, 32, 64})
    for (bool coarse : {false, true}) {  // coarse: many cells tie, broken by the flat cell
      RandomBestLists(groups, k, n, coarse, rng, &scores, &ids);
      ExpectCandidates(be, scores, ids, groups, k, n, true,
                       "k=" + std::to_string(k) + (coarse ? " coarse" : ""));
    }
}

TEST(ProductKeyOps, CandidateTiesGoToTheLowerFlatCell) {
  CpuBackend be(1);
  const int k = 4;
  const int64_t n = 10;
  // All cells equal: the first k flat cells, i.e. row a = 0, and equal weights.
  std::vector<float> scores(2 * k, 0.25f);
  const std::vector<int32_t> ids = {7, 3, 9, 1, 2, 8, 0, 5};
  auto weights = Poisoned<float>(k);
  auto indices = Poisoned<int64_t>(k);
  ProductKeyCandidatesParams p;
  p.groups = 1;
  p.knn = k;
  p.n_keys = n;
  p.best_scores = scores.data();
  p.best_ids = ids.data();
  p.weights = weights.data();
  p.indices = indices.data();
  be.ProductKeyCandidates(p);
  EXPECT_EQ(indices, (std::vector<int64_t>{72, 78, 70, 75}));
  EXPECT_EQ(weights, std::vector<float>(k, 0.25f));
  // Half 1 = {3, 2, 2, 1}, half 2 = {1, 0, 0, -1}: cell (0,0) scores 4, then (0,1), (0,2),
  // (1,0) and (2,0) all score 3 and rank in flat order 1, 2, 4, 8.
  scores = {3.f, 2.f, 2.f, 1.f, 1.f, 0.f, 0.f, -1.f};
  be.ProductKeyCandidates(p);
  EXPECT_EQ(indices, (std::vector<int64_t>{72, 78, 70, 32}));
  ExpectCandidates(be, scores, ids, 1, k, n, true, "ties");
}

// Infinities can make the grid's sums non-monotone (inf + -inf is NaN, which ranks first), where
// the op scores every cell instead of the few that can win.
TEST(ProductKeyOps, CandidatesWithInfinitiesScoreTheWholeGrid) {
  CpuBackend be(1);
  const float inf = INFINITY;
  const int k = 4;
  // The NaN cells (0,2), (0,3), (1,2), (1,3) rank first; (1,2) and (1,3) lie outside the cells
  // (a+1)(b+1) <= k that finite scores confine the winners to.
  const std::vector<float> scores = {inf, inf, 1.f, 0.f, 1.f, 0.f, -inf, -inf};
  const std::vector<int32_t> ids = {0, 1, 2, 3, 0, 1, 2, 3};
  auto weights = Poisoned<float>(k);
  auto indices = Poisoned<int64_t>(k);
  ProductKeyCandidatesParams p;
  p.groups = 1;
  p.knn = k;
  p.n_keys = 4;
  p.best_scores = scores.data();
  p.best_ids = ids.data();
  p.weights = weights.data();
  p.indices = indices.data();
  be.ProductKeyCandidates(p);
  EXPECT_EQ(indices, (std::vector<int64_t>{2, 3, 6, 7}));
  ExpectCandidates(be, scores, ids, 1, k, 4, false, "infinities");

  // Random lists with +inf atop one half and -inf at the bottom of the other.
  std::mt19937 rng(6);
  std::vector<float> s;
  std::vector<int32_t> i;
  const int kk = 8;
  RandomBestLists(8, kk, 100, false, rng, &s, &i);
  for (int g = 0; g < 8; ++g) {
    float* h1 = s.data() + g * 2 * kk;
    float* h2 = h1 + kk;
    if (g % 2 == 0) {
      h1[0] = h1[1] = inf;
      h2[kk - 1] = h2[kk - 2] = h2[kk - 3] = -inf;
    } else {
      h1[kk - 1] = h1[kk - 2] = -inf;
      h2[0] = inf;
    }
  }
  ExpectCandidates(be, s, i, 8, kk, 100, false, "random with infinities");
}

TEST(ProductKeyOps, WeightedRowSumOfPackedRowsInEveryDtype) {
  std::mt19937 rng(7);
  CpuBackend be(2);
  const int64_t rows = 5, table_rows = 40;
  const int per_row = 12;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3})
    for (int d : {32, 96}) {
      const PackedValues t = MakePacked(dtype, d, table_rows, rng);
      std::uniform_int_distribution<int64_t> pick(0, table_rows - 1);
      std::vector<int64_t> ids(rows * per_row);
      for (auto& id : ids) id = pick(rng);  // repeats allowed
      const auto w = RandomNormal(rows * per_row, rng, 0.3f);
      auto out = Poisoned<float>(rows * d);
      WeightedRowSumParams p;
      p.rows = rows;
      p.per_row = per_row;
      p.packed = t.bytes.data();
      p.packed_bytes = t.packed_bytes;
      p.dtype = dtype;
      p.d = d;
      p.rows_idx = ids.data();
      p.weights = w.data();
      p.out = out.data();
      be.WeightedRowSum(p);
      const std::string what = std::string(DTypeToConfig(dtype)) + " d=" + std::to_string(d);
      EXPECT_SAME_BITS(out, RefWeightedRowSum(t, ids, w, rows, per_row), what);
      // And near the exact sum: per_row terms, so within per_row u sum|w v| (a check of the
      // reference itself).
      for (int64_t r = 0; r < rows; ++r)
        for (int i = 0; i < d; ++i) {
          double exact = 0, mag = 0;
          for (int j = 0; j < per_row; ++j) {
            const double term =
                static_cast<double>(w[r * per_row + j]) * t.Value(ids[r * per_row + j], i);
            exact += term;
            mag += std::fabs(term);
          }
          ASSERT_NEAR(out[r * d + i], exact, per_row * kU * mag + 1e-30) << what;
        }
    }
}

TEST(ProductKeyOps, SigmoidScaleRowsScalesEachRowByItsGate) {
  std::mt19937 rng(8);
  CpuBackend be(2);
  const int64_t rows = 9;
  const int dim = 70;
  const auto logit = RandomNormal(rows, rng, 3.f);
  const auto x0 = RandomNormal(rows * dim, rng);
  auto x = x0;
  be.SigmoidScaleRows(logit.data(), rows, dim, x.data());
  std::vector<float> want(x0.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float s = 1.0f / (1.0f + std::exp(-logit[r]));
    for (int i = 0; i < dim; ++i) want[r * dim + i] = x0[r * dim + i] * s;
  }
  EXPECT_SAME_BITS(x, want, "sigmoid gate");
}

// --- a whole chooser + read: the five ops in the model's order --------------------------------

struct Chain {
  int64_t rows = 0;
  int heads = 2, k_dim = 40, knn = 8, d = 32;
  int64_t n_keys = 70;
  DType dtype = DType::kBF16;
  std::vector<float> query, keys, logit;
  PackedValues values;

  int64_t lines() const { return rows * heads * 2; }
  int64_t groups() const { return rows * heads; }
  int per_row() const { return heads * knn; }
};

Chain MakeChain(int64_t rows, std::mt19937& rng) {
  Chain c;
  c.rows = rows;
  c.query = RandomNormal(rows * c.heads * c.k_dim, rng);
  c.keys = RandomNormal(c.heads * c.n_keys * c.k_dim, rng);
  c.logit = RandomNormal(rows, rng, 2.f);
  c.values = MakePacked(c.dtype, c.d, c.n_keys * c.n_keys, rng);
  return c;
}

struct ChainResult {
  std::vector<float> scores, best_scores, weights, y;
  std::vector<int32_t> best_ids;
  std::vector<int64_t> indices;
};

// The chain's buffers in a backend's memory: inputs uploaded, outputs poisoned.
class ChainBuffers {
 public:
  ChainBuffers(Backend* b, const Chain& c)
      : b_(b),
        c_(c),
        query_(Put(c.query)),
        keys_(Put(c.keys)),
        logit_(Put(c.logit)),
        table_(Put(c.values.bytes)),
        scores_(Put(Poisoned<float>(c.lines() * c.n_keys))),
        best_scores_(Put(Poisoned<float>(c.lines() * c.knn))),
        best_ids_(Put(Poisoned<int32_t>(c.lines() * c.knn))),
        weights_(Put(Poisoned<float>(c.groups() * c.knn))),
        indices_(Put(Poisoned<int64_t>(c.groups() * c.knn))),
        y_(Put(Poisoned<float>(c.rows * c.d))) {}

  void Issue() {
    ProductKeyScoresParams sp;
    sp.rows = c_.rows;
    sp.heads = c_.heads;
    sp.k_dim = c_.k_dim;
    sp.n_keys = c_.n_keys;
    sp.query = query_.get<float>();
    sp.keys = keys_.get<float>();
    sp.scores = scores_.get<float>();
    b_->ProductKeyScores(sp);
    b_->RowTopK(scores_.get<float>(), c_.lines(), c_.n_keys, c_.knn, best_scores_.get<float>(),
                best_ids_.get<int32_t>());
    ProductKeyCandidatesParams cp;
    cp.groups = c_.groups();
    cp.knn = c_.knn;
    cp.n_keys = c_.n_keys;
    cp.best_scores = best_scores_.get<float>();
    cp.best_ids = best_ids_.get<int32_t>();
    cp.weights = weights_.get<float>();
    cp.indices = indices_.get<int64_t>();
    b_->ProductKeyCandidates(cp);
    WeightedRowSumParams wp;
    wp.rows = c_.rows;
    wp.per_row = c_.per_row();
    wp.packed = table_.get();
    wp.packed_bytes = c_.values.packed_bytes;
    wp.dtype = c_.values.dtype;
    wp.d = c_.d;
    wp.rows_idx = indices_.get<int64_t>();
    wp.weights = weights_.get<float>();
    wp.out = y_.get<float>();
    b_->WeightedRowSum(wp);
    b_->SigmoidScaleRows(logit_.get<float>(), c_.rows, c_.d, y_.get<float>());
  }

  void SetQuery(const std::vector<float>& q) { b_->Upload(query_.get(), q.data(), Bytes(q)); }

  ChainResult Read() {
    ChainResult r;
    r.scores = Get<float>(scores_, c_.lines() * c_.n_keys);
    r.best_scores = Get<float>(best_scores_, c_.lines() * c_.knn);
    r.best_ids = Get<int32_t>(best_ids_, c_.lines() * c_.knn);
    r.weights = Get<float>(weights_, c_.groups() * c_.knn);
    r.indices = Get<int64_t>(indices_, c_.groups() * c_.knn);
    r.y = Get<float>(y_, c_.rows * c_.d);
    return r;
  }

 private:
  template <typename T>
  static size_t Bytes(const std::vector<T>& v) {
    return v.size() * sizeof(T);
  }
  template <typename T>
  BackendBuffer Put(const std::vector<T>& host) {
    BackendBuffer buf(b_, Bytes(host));
    b_->Upload(buf.get(), host.data(), Bytes(host));
    return buf;
  }
  template <typename T>
  std::vector<T> Get(const BackendBuffer& buf, int64_t n) {
    std::vector<T> host(static_cast<size_t>(n));
    b_->Download(host.data(), buf.get(), Bytes(host));
    return host;
  }

  Backend* b_;
  const Chain& c_;
  BackendBuffer query_, keys_, logit_, table_, scores_, best_scores_, best_ids_, weights_, indices_,
      y_;
};

void ExpectSameResult(const ChainResult& a, const ChainResult& b, const std::string& what) {
  EXPECT_SAME_BITS(a.scores, b.scores, what << " scores");
  EXPECT_SAME_BITS(a.best_scores, b.best_scores, what << " best scores");
  EXPECT_EQ(a.best_ids, b.best_ids) << what;
  EXPECT_SAME_BITS(a.weights, b.weights, what << " weights");
  EXPECT_EQ(a.indices, b.indices) << what;
  EXPECT_SAME_BITS(a.y, b.y, what << " y");
}

TEST(ProductKeyOps, ChainMatchesTheReferencesEndToEnd) {
  std::mt19937 rng(9);
  CpuBackend be(2);
  const Chain c = MakeChain(6, rng);
  ChainBuffers buf(&be, c);
  buf.Issue();
  const ChainResult r = buf.Read();
  EXPECT_SAME_BITS(r.scores, RefScores(c.query, c.keys, c.rows, c.heads, c.k_dim, c.n_keys),
                   "scores");
  for (int64_t l = 0; l < c.lines(); ++l) {
    const auto want = RefTopK(r.scores.data() + l * c.n_keys, c.n_keys, c.knn);
    ASSERT_EQ(
        std::vector<int32_t>(r.best_ids.begin() + l * c.knn, r.best_ids.begin() + (l + 1) * c.knn),
        want)
        << "line " << l;
  }
  for (int64_t g = 0; g < c.groups(); ++g) {
    const RefGroup want = RefCandidates(r.best_scores.data() + g * 2 * c.knn,
                                        r.best_ids.data() + g * 2 * c.knn, c.knn, c.n_keys);
    ASSERT_EQ(
        std::vector<int64_t>(r.indices.begin() + g * c.knn, r.indices.begin() + (g + 1) * c.knn),
        want.indices)
        << "group " << g;
  }
  std::vector<float> y = RefWeightedRowSum(c.values, r.indices, r.weights, c.rows, c.per_row());
  for (int64_t row = 0; row < c.rows; ++row)
    for (int i = 0; i < c.d; ++i) y[row * c.d + i] *= 1.0f / (1.0f + std::exp(-c.logit[row]));
  EXPECT_SAME_BITS(r.y, y, "gated y");
}

// Batch invariance: row r's results are the same bits whether it is computed alone or in a batch
// of many rows, and whatever the thread count (the pool splits the batch differently).
TEST(ProductKeyOps, RowResultsDoNotDependOnTheBatch) {
  std::mt19937 rng(10);
  const Chain c = MakeChain(37, rng);
  CpuBackend wide(4);
  ChainBuffers batch(&wide, c);
  batch.Issue();
  const ChainResult all = batch.Read();
  CpuBackend single(1);
  ChainBuffers one_thread(&single, c);
  one_thread.Issue();
  ExpectSameResult(one_thread.Read(), all, "1 thread vs 4");

  for (int64_t r = 0; r < c.rows; ++r) {
    Chain alone = c;
    alone.rows = 1;
    alone.query.assign(c.query.begin() + r * c.heads * c.k_dim,
                       c.query.begin() + (r + 1) * c.heads * c.k_dim);
    alone.logit = {c.logit[r]};
    ChainBuffers buf(&wide, alone);
    buf.Issue();
    const ChainResult got = buf.Read();
    auto slice = [&](const auto& v, int64_t per) {
      return std::vector<typename std::decay_t<decltype(v)>::value_type>(v.begin() + r * per,
                                                                         v.begin() + (r + 1) * per);
    };
    ChainResult want;
    want.scores = slice(all.scores, c.heads * 2 * c.n_keys);
    want.best_scores = slice(all.best_scores, c.heads * 2 * c.knn);
    want.best_ids = slice(all.best_ids, c.heads * 2 * c.knn);
    want.weights = slice(all.weights, c.heads * c.knn);
    want.indices = slice(all.indices, c.heads * c.knn);
    want.y = slice(all.y, c.d);
    ExpectSameResult(got, want, "row " + std::to_string(r) + " alone");
  }
}

// The step-graph path: recorded ops do not run until launched, then replay with the data behind
// the same pointers at launch time.
TEST(ProductKeyOps, StepGraphRecordsAndReplaysTheOps) {
  std::mt19937 rng(11);
  Chain c = MakeChain(5, rng);
  CpuBackend direct_be(2), graph_be(2);
  ChainBuffers direct(&direct_be, c), graphed(&graph_be, c);
  ASSERT_TRUE(graph_be.SupportsGraphs());
  graph_be.BeginGraph();
  graphed.Issue();
  std::string error;
  const auto graph = graph_be.EndGraph(&error);
  ASSERT_NE(graph, nullptr) << error;
  const ChainResult before = graphed.Read();
  EXPECT_TRUE(std::all_of(before.y.begin(), before.y.end(), [](float v) { return std::isnan(v); }))
      << "recorded ops ran";
  EXPECT_TRUE(std::all_of(before.indices.begin(), before.indices.end(),
                          [](int64_t v) { return v == std::numeric_limits<int64_t>::min(); }));

  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      c.query = RandomNormal(c.query.size(), rng);
      direct.SetQuery(c.query);
      graphed.SetQuery(c.query);
    }
    ASSERT_TRUE(graph_be.LaunchGraph(*graph));
    direct.Issue();
    ExpectSameResult(graphed.Read(), direct.Read(), "graph round " + std::to_string(round));
  }
}

// SeparateMemoryBackend (tests/unit/separate_memory_backend.h) checks every pointer the ops take
// against the memory it allocated: the chain on it gives the CPU's bits and no violation.
TEST(ProductKeyOps, RunOnSeparateMemoryWithoutStrayPointers) {
  std::mt19937 rng(12);
  const Chain c = MakeChain(4, rng);
  testing_util::SeparateMemoryBackend sep;
  ChainBuffers on_sep(&sep, c);
  on_sep.Issue();
  const ChainResult got = on_sep.Read();
  CpuBackend cpu(2);
  ChainBuffers on_cpu(&cpu, c);
  on_cpu.Issue();
  ExpectSameResult(got, on_cpu.Read(), "separate memory");
  EXPECT_EQ(sep.violations(), 0);
}

// --- the per-thread forms the CUDA kernels call (cuda/product_key.cu) --------------------------

TEST(ProductKeyOps, TheKernelsFormsOfTheRowMathGiveTheCpuBits) {
  std::mt19937 rng(13);
  const Chain c = MakeChain(3, rng);
  CpuBackend be(2);
  ChainBuffers buf(&be, c);
  buf.Issue();
  const ChainResult r = buf.Read();

  // Scores: each key's chain continued over pieces of 32 values from shared memory.
  const int half = c.k_dim / 2;
  std::vector<float> scores(r.scores.size());
  for (int64_t l = 0; l < c.lines(); ++l)
    for (int64_t key = 0; key < c.n_keys; ++key) {
      const float* q = c.query.data() + (l / 2) * c.k_dim + (l % 2) * half;
      const float* k = c.keys.data() + ((l % (2 * c.heads)) * c.n_keys + key) * half;
      float acc = 0.f;
      for (int j0 = 0; j0 < half; j0 += 32)
        SubKeyDotsAccumulate<1>(&acc, q + j0, k + j0, 0, 1, std::min(32, half - j0));
      scores[l * c.n_keys + key] = acc;
    }
  EXPECT_SAME_BITS(scores, r.scores, "chunked scores");

  // RowTopK: rounds of a block maximum over 256 threads' strided shares, only the owner of the
  // key taken rescanning its share.
  constexpr int kThreads = 256;
  for (int64_t l = 0; l < c.lines(); ++l) {
    const float* x = r.scores.data() + l * c.n_keys;
    std::vector<uint64_t> local(kThreads);
    for (int t = 0; t < kThreads; ++t)
      local[t] = TopKBestBelow(x, c.n_keys, t, kThreads, ~uint64_t{0});
    for (int j = 0; j < c.knn; ++j) {
      const uint64_t best = *std::max_element(local.begin(), local.end());
      ASSERT_EQ(static_cast<int32_t>(TopKKeyPosition(best)), r.best_ids[l * c.knn + j])
          << "line " << l << " j " << j;
      for (int t = 0; t < kThreads; ++t)
        if (local[t] == best) local[t] = TopKBestBelow(x, c.n_keys, t, kThreads, best);
    }
  }

  // Candidates with a scratch list interleaved across a block's 64 threads.
  constexpr int kStride = 64;
  std::vector<uint64_t> scratch(static_cast<size_t>(c.knn) * kStride);
  for (int64_t g = 0; g < c.groups(); ++g) {
    std::vector<float> w(c.knn);
    std::vector<int64_t> idx(c.knn);
    ProductKeyCandidatesGroup(r.best_scores.data() + g * 2 * c.knn,
                              r.best_ids.data() + g * 2 * c.knn, c.knn, c.n_keys,
                              scratch.data() + g % kStride, kStride, w.data(), idx.data());
    EXPECT_SAME_BITS(
        w, std::vector<float>(r.weights.begin() + g * c.knn, r.weights.begin() + (g + 1) * c.knn),
        "group " << g << " weights");
    EXPECT_EQ(idx, std::vector<int64_t>(r.indices.begin() + g * c.knn,
                                        r.indices.begin() + (g + 1) * c.knn));
  }

  // The weighted sum one value at a time (before the gate, which the chain applied to y).
  std::vector<float> y(static_cast<size_t>(c.rows * c.d));
  for (int64_t row = 0; row < c.rows; ++row)
    for (int i = 0; i < c.d; ++i)
      y[row * c.d + i] =
          WeightedPackedValue(c.values.bytes.data(), c.values.packed_bytes, c.values.dtype, c.d,
                              r.indices.data() + row * c.per_row(),
                              r.weights.data() + row * c.per_row(), c.per_row(), i);
  for (int64_t row = 0; row < c.rows; ++row)
    for (int i = 0; i < c.d; ++i) y[row * c.d + i] *= Sigmoid(c.logit[row]);
  EXPECT_SAME_BITS(y, r.y, "per-value weighted sum");
}

}  // namespace
}  // namespace engram
