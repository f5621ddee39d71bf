// CudaBackend's product-key memory ops (cuda/product_key.cu) against CpuBackend through the
// Backend interface, on random inputs, outputs poisoned (NaN / -1 bytes) before every call.
//
// Tolerances, with u = 2^-24 (float unit roundoff). product_key_math.h spells out every rounding
// of the sums (no FMA contraction on the device, none on the host) in the CPU's order, and the
// packed-row dequantisation is exact on both sides, so:
//  - ProductKeyScores and WeightedRowSum (given the same weights): bitwise equal;
//  - RowTopK and the candidates' indices: the same choices and values exactly (on the same
//    inputs: no near-tie can break differently, since both rank by the same 64-bit keys);
//  - the softmax weights: the only difference is expf, within 2 ulp on the device (CUDA C
//    Programming Guide, single-precision functions) and 1 ulp in glibc, so e_j differs by at most
//    3 ulp <= 6u relative; the two sums of k terms then differ by at most (6 + 2(k-1))u
//    relative (6u from the terms, (k-1)u rounding on each side) and each side's division
//    rounds once: |w_gpu - w_cpu| <= (2k + 14)u w_cpu;
//  - the sigmoid gate s = 1/(1+e): e differs by <= 6u relative, so 1 + e by <= 6u plus one
//    rounding each side (8u), the division 2u more, the product with x 2u: 12u |x s|;
//  - the whole chooser + read run by each backend on its own outputs: the scores and choices
//    are the same bits, so y differs only through the weights: |y_gpu - y_cpu| <= sum_j |dw_j|
//    |v_j| + per_row u (sum_j |w_j v_j| + sum_j |w'_j v_j|), then the gate as above.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engram/kernels/backend.h"
#include "engram/kernels/dtype.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::CudaBackend;
using cuda::testing::kU;
using cuda::testing::RandomNormal;
using cuda::testing::SameFloat;

std::unique_ptr<CudaBackend> CreateCuda() {
  std::string error;
  auto b = CudaBackend::Create(0, &error);
  EXPECT_NE(b, nullptr) << error;
  return b;
}

template <typename T>
size_t Bytes(const std::vector<T>& v) {
  return v.size() * sizeof(T);
}

template <typename T>
BackendBuffer ToBackend(Backend& b, const std::vector<T>& host) {
  BackendBuffer buf(&b, std::max<size_t>(Bytes(host), 1));
  b.Upload(buf.get(), host.data(), Bytes(host));
  return buf;
}

template <typename T>
std::vector<T> FromBackend(Backend& b, const BackendBuffer& buf, size_t n) {
  std::vector<T> host(n);
  b.Download(host.data(), buf.get(), Bytes(host));
  return host;
}

// A device buffer of n poisoned elements (all bytes 0xff: NaN floats, -1 integers).
template <typename T>
BackendBuffer Poisoned(Backend& b, size_t n) {
  std::vector<T> host(n);
  std::memset(host.data(), 0xff, Bytes(host));
  return ToBackend(b, host);
}

template <typename T>
std::vector<T> PoisonedHost(size_t n) {
  std::vector<T> host(n);
  std::memset(host.data(), 0xff, Bytes(host));
  return host;
}

// Number of positions whose floats differ bitwise (any two NaNs match), reporting the first few.
int CountBitDifferences(const std::vector<float>& gpu, const std::vector<float>& cpu,
                        const std::string& what) {
  EXPECT_EQ(gpu.size(), cpu.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < std::min(gpu.size(), cpu.size()); ++i)
    if (!SameFloat(gpu[i], cpu[i]) && ++bad <= 5)
      ADD_FAILURE() << what << " [" << i << "] gpu " << gpu[i] << " cpu " << cpu[i];
  return bad;
}

// Values on a coarse grid: ties everywhere.
std::vector<float> RandomCoarse(size_t n, std::mt19937& rng, int levels) {
  std::uniform_int_distribution<int> d(0, levels - 1);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(rng)) * 0.5f;
  return v;
}

bool NaNFirstGreater(float a, float b) {
  if (std::isnan(a)) return !std::isnan(b);
  if (std::isnan(b)) return false;
  return a > b;
}

// Each half of each group sorted descending (as RowTopK leaves them), distinct ids below n.
void RandomBestLists(int64_t groups, int k, int64_t n, bool coarse, std::mt19937& rng,
                     std::vector<float>* scores, std::vector<int32_t>* ids) {
  scores->clear();
  ids->clear();
  std::vector<int32_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  for (int64_t g = 0; g < 2 * groups; ++g) {
    std::vector<float> v = coarse ? RandomCoarse(k, rng, 4) : RandomNormal(k, rng, 2.f);
    std::sort(v.begin(), v.end(), NaNFirstGreater);
    scores->insert(scores->end(), v.begin(), v.end());
    std::shuffle(all.begin(), all.end(), rng);
    ids->insert(ids->end(), all.begin(), all.begin() + k);
  }
}

// A packed table: d values in dtype, (fp8) d/32 ue8m0 scale bytes, 12 bytes of padding.
struct Packed {
  DType dtype;
  int d;
  int64_t rows, packed_bytes;
  std::vector<uint8_t> bytes;
};

Packed MakePacked(DType dtype, int d, int64_t rows, std::mt19937& rng) {
  Packed t{dtype, d, rows, 0, {}};
  const bool fp8 = dtype == DType::kF8E4M3;
  t.packed_bytes = int64_t{d} * DTypeSize(dtype) + (fp8 ? d / kFp8BlockSize : 0) + 12;
  t.bytes.assign(static_cast<size_t>(rows * t.packed_bytes), 0);
  std::normal_distribution<float> nd(0.f, 2.f);
  std::uniform_int_distribution<int> scale(124, 130);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = t.bytes.data() + r * t.packed_bytes;
    for (int i = 0; i < d; ++i) {
      const float v = nd(rng);
      if (dtype == DType::kF32) {
        std::memcpy(row + 4 * i, &v, 4);
      } else if (dtype == DType::kBF16 || dtype == DType::kF16) {
        const uint16_t h = dtype == DType::kBF16 ? FloatToBf16(v) : FloatToF16(v);
        std::memcpy(row + 2 * i, &h, 2);
      } else {
        row[i] = FloatToFp8E4M3(v);
      }
    }
    if (fp8)
      for (int b = 0; b < d / kFp8BlockSize; ++b) row[d + b] = static_cast<uint8_t>(scale(rng));
  }
  return t;
}

float PackedValue(const Packed& t, int64_t r, int i) {
  const uint8_t* row = t.bytes.data() + r * t.packed_bytes;
  float f;
  uint16_t h;
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(&f, row + 4 * i, 4);
      return f;
    case DType::kBF16:
      std::memcpy(&h, row + 2 * i, 2);
      return Bf16ToFloat(h);
    case DType::kF16:
      std::memcpy(&h, row + 2 * i, 2);
      return F16ToFloat(h);
    default:
      return Fp8E4M3ToFloat(row[i]) * Ue8m0ToFloat(row[t.d + i / kFp8BlockSize]);
  }
}

double SoftmaxTolerance(int k, float w_cpu) { return (2.0 * k + 14) * kU * std::fabs(w_cpu); }

// --- the ops one by one -----------------------------------------------------------------------

TEST(CudaProductKey, ScoresMatchCpuBitwise) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(1);
  struct Shape {
    int64_t rows;
    int heads, k_dim;
    int64_t n;
  };
  // Halves of 37 and 5 values (pieces of 32 and a remainder), key counts off the tile of 32, row
  // counts off the tile of 8, and a Memory+-sized layer.
  for (const Shape& s :
       {Shape{13, 3, 74, 1000}, Shape{1, 2, 10, 7}, Shape{8, 1, 64, 32}, Shape{3, 4, 512, 1024}}) {
    const auto query = RandomNormal(s.rows * s.heads * s.k_dim, rng);
    const auto keys = RandomNormal(s.heads * s.n * s.k_dim, rng);
    const size_t count = s.rows * s.heads * 2 * s.n;
    std::vector<float> want = PoisonedHost<float>(count);
    ProductKeyScoresParams p;
    p.rows = s.rows;
    p.heads = s.heads;
    p.k_dim = s.k_dim;
    p.n_keys = s.n;
    p.query = query.data();
    p.keys = keys.data();
    p.scores = want.data();
    cpu.ProductKeyScores(p);
    BackendBuffer dq = ToBackend(*gpu, query), dk = ToBackend(*gpu, keys);
    BackendBuffer out = Poisoned<float>(*gpu, count);
    p.query = dq.get<float>();
    p.keys = dk.get<float>();
    p.scores = out.get<float>();
    gpu->ProductKeyScores(p);
    EXPECT_EQ(CountBitDifferences(
                  FromBackend<float>(*gpu, out, count), want,
                  "scores rows=" + std::to_string(s.rows) + " k_dim=" + std::to_string(s.k_dim)),
              0);
  }
}

void ExpectTopKMatches(CudaBackend& gpu, CpuBackend& cpu, const std::vector<float>& x, int64_t rows,
                       int64_t n, int k, const std::string& what) {
  auto values = PoisonedHost<float>(rows * k);
  auto index = PoisonedHost<int32_t>(rows * k);
  cpu.RowTopK(x.data(), rows, n, k, values.data(), index.data());
  BackendBuffer dx = ToBackend(gpu, x), dv = Poisoned<float>(gpu, rows * k),
                di = Poisoned<int32_t>(gpu, rows * k);
  gpu.RowTopK(dx.get<float>(), rows, n, k, dv.get<float>(), di.get<int32_t>());
  EXPECT_EQ(FromBackend<int32_t>(gpu, di, rows * k), index) << what;
  EXPECT_EQ(CountBitDifferences(FromBackend<float>(gpu, dv, rows * k), values, what), 0);
}

TEST(CudaProductKey, RowTopKMatchesCpuExactly) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(2);
  for (int64_t n : {1, 7, 256, 1000, 5000})
    for (int k : {1, 8, 32, 300, 5000}) {
      if (k > n) continue;
      const std::string what = "n=" + std::to_string(n) + " k=" + std::to_string(k);
      ExpectTopKMatches(*gpu, cpu, RandomNormal(9 * n, rng), 9, n, k, what);
      ExpectTopKMatches(*gpu, cpu, RandomCoarse(9 * n, rng, 3), 9, n, k, "ties " + what);
    }
  const int64_t n = 1000;
  ExpectTopKMatches(*gpu, cpu, RandomCoarse(4 * n, rng, 2), 4, n, static_cast<int>(n), "k == n");
  // NaN above +inf, -0 equal to +0.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = INFINITY;
  ExpectTopKMatches(*gpu, cpu, {1.f, -inf, nan, inf, 0.f, -0.f, nan, inf, -0.f, 2.f}, 1, 10, 10,
                    "specials");
  // A long row: 2^20 values on a grid of 1/64, so that its top holds ties.
  auto x = RandomNormal(size_t{2} << 20, rng, 2.f);
  for (auto& v : x) v = std::round(v * 64.f) / 64.f;
  ExpectTopKMatches(*gpu, cpu, x, 2, int64_t{1} << 20, 64, "long rows");
}

void ExpectCandidatesMatch(CudaBackend& gpu, CpuBackend& cpu, const std::vector<float>& scores,
                           const std::vector<int32_t>& ids, int64_t groups, int k, int64_t n,
                           const std::string& what) {
  auto weights = PoisonedHost<float>(groups * k);
  auto indices = PoisonedHost<int64_t>(groups * k);
  ProductKeyCandidatesParams p;
  p.groups = groups;
  p.knn = k;
  p.n_keys = n;
  p.best_scores = scores.data();
  p.best_ids = ids.data();
  p.weights = weights.data();
  p.indices = indices.data();
  cpu.ProductKeyCandidates(p);
  BackendBuffer ds = ToBackend(gpu, scores), di = ToBackend(gpu, ids),
                dw = Poisoned<float>(gpu, groups * k), dx = Poisoned<int64_t>(gpu, groups * k);
  p.best_scores = ds.get<float>();
  p.best_ids = di.get<int32_t>();
  p.weights = dw.get<float>();
  p.indices = dx.get<int64_t>();
  gpu.ProductKeyCandidates(p);
  EXPECT_EQ(FromBackend<int64_t>(gpu, dx, groups * k), indices) << what;
  const auto got = FromBackend<float>(gpu, dw, groups * k);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::isnan(weights[i])
                        ? std::isnan(got[i])
                        : std::fabs(got[i] - weights[i]) <= SoftmaxTolerance(k, weights[i]);
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << " weight [" << i << "] gpu " << got[i] << " cpu " << weights[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(CudaProductKey, CandidatesMatchCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(3);
  const int64_t n = 2048, groups = 130;  // three blocks of 64 threads, the last one partial
  std::vector<float> scores;
  std::vector<int32_t> ids;
  // knn <= 64 keeps the sorted lists in shared memory; 65 and 100 in the outputs' own slots.
  for (int k : {1, 8, 32, 64, 65, 100})
    for (bool coarse : {false, true}) {
      RandomBestLists(groups, k, n, coarse, rng, &scores, &ids);
      ExpectCandidatesMatch(*gpu, cpu, scores, ids, groups, k, n,
                            "k=" + std::to_string(k) + (coarse ? " coarse" : ""));
    }
  // Infinities (the whole grid scored) and NaN scores.
  const int k = 8;
  RandomBestLists(8, k, n, false, rng, &scores, &ids);
  for (int g = 0; g < 8; ++g) {
    float* h1 = scores.data() + g * 2 * k;
    float* h2 = h1 + k;
    if (g % 3 == 0) {
      h1[0] = h1[1] = INFINITY;
      h2[k - 1] = -INFINITY;
    } else if (g % 3 == 1) {
      h1[k - 1] = -INFINITY;
      h2[0] = h2[1] = INFINITY;
    } else {
      h2[0] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  ExpectCandidatesMatch(*gpu, cpu, scores, ids, 8, k, n, "specials");
}

TEST(CudaProductKey, WeightedRowSumMatchesCpuBitwise) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(4);
  const int64_t rows = 5, table_rows = 300;
  const int per_row = 128;  // H * k of a Memory+ layer
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3})
    for (int d : {32, 96, 1056}) {  // 1056: more values than the block's 256 threads
      const Packed t = MakePacked(dtype, d, table_rows, rng);
      std::uniform_int_distribution<int64_t> pick(0, table_rows - 1);
      std::vector<int64_t> ids(rows * per_row);
      for (auto& id : ids) id = pick(rng);
      const auto w = RandomNormal(rows * per_row, rng, 0.1f);
      auto want = PoisonedHost<float>(rows * d);
      WeightedRowSumParams p;
      p.rows = rows;
      p.per_row = per_row;
      p.packed = t.bytes.data();
      p.packed_bytes = t.packed_bytes;
      p.dtype = dtype;
      p.d = d;
      p.rows_idx = ids.data();
      p.weights = w.data();
      p.out = want.data();
      cpu.WeightedRowSum(p);
      BackendBuffer dt = ToBackend(*gpu, t.bytes), di = ToBackend(*gpu, ids),
                    dw = ToBackend(*gpu, w), out = Poisoned<float>(*gpu, rows * d);
      p.packed = dt.get();
      p.rows_idx = di.get<int64_t>();
      p.weights = dw.get<float>();
      p.out = out.get<float>();
      gpu->WeightedRowSum(p);
      EXPECT_EQ(CountBitDifferences(FromBackend<float>(*gpu, out, rows * d), want,
                                    std::string(DTypeToConfig(dtype)) + " d=" + std::to_string(d)),
                0);
    }
}

TEST(CudaProductKey, SigmoidScaleRowsMatchesCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(5);
  const int64_t rows = 17;
  const int dim = 300;
  const auto logit = RandomNormal(rows, rng, 4.f);
  const auto x = RandomNormal(rows * dim, rng);
  auto want = x;
  cpu.SigmoidScaleRows(logit.data(), rows, dim, want.data());
  BackendBuffer dl = ToBackend(*gpu, logit), dx = ToBackend(*gpu, x);
  gpu->SigmoidScaleRows(dl.get<float>(), rows, dim, dx.get<float>());
  const auto got = FromBackend<float>(*gpu, dx, rows * dim);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 12 * kU * std::fabs(want[i]) + 1e-37) && ++bad <= 5)
      ADD_FAILURE() << "[" << i << "] gpu " << got[i] << " cpu " << want[i];
  EXPECT_EQ(bad, 0);
}

// --- the chooser and the read, each backend on its own outputs --------------------------------

struct Chain {
  int64_t rows = 0;
  int heads = 4, k_dim = 128, knn = 32, d = 256;
  int64_t n_keys = 256;
  std::vector<float> query, keys, logit;
  Packed values;
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
  c.values = MakePacked(DType::kBF16, c.d, c.n_keys * c.n_keys, rng);
  return c;
}

struct ChainResult {
  std::vector<float> scores, best_scores, weights, y;
  std::vector<int32_t> best_ids;
  std::vector<int64_t> indices;
};

class ChainBuffers {
 public:
  ChainBuffers(Backend* b, const Chain& c)
      : b_(b),
        c_(c),
        query_(ToBackend(*b, c.query)),
        keys_(ToBackend(*b, c.keys)),
        logit_(ToBackend(*b, c.logit)),
        table_(ToBackend(*b, c.values.bytes)),
        scores_(Poisoned<float>(*b, c.lines() * c.n_keys)),
        best_scores_(Poisoned<float>(*b, c.lines() * c.knn)),
        best_ids_(Poisoned<int32_t>(*b, c.lines() * c.knn)),
        weights_(Poisoned<float>(*b, c.groups() * c.knn)),
        indices_(Poisoned<int64_t>(*b, c.groups() * c.knn)),
        y_(Poisoned<float>(*b, c.rows * c.d)) {}

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
    r.scores = FromBackend<float>(*b_, scores_, c_.lines() * c_.n_keys);
    r.best_scores = FromBackend<float>(*b_, best_scores_, c_.lines() * c_.knn);
    r.best_ids = FromBackend<int32_t>(*b_, best_ids_, c_.lines() * c_.knn);
    r.weights = FromBackend<float>(*b_, weights_, c_.groups() * c_.knn);
    r.indices = FromBackend<int64_t>(*b_, indices_, c_.groups() * c_.knn);
    r.y = FromBackend<float>(*b_, y_, c_.rows * c_.d);
    return r;
  }

 private:
  Backend* b_;
  const Chain& c_;
  BackendBuffer query_, keys_, logit_, table_, scores_, best_scores_, best_ids_, weights_, indices_,
      y_;
};

TEST(CudaProductKey, ChooserAndReadMatchCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(6);
  const Chain c = MakeChain(11, rng);
  ChainBuffers on_gpu(gpu.get(), c), on_cpu(&cpu, c);
  on_gpu.Issue();
  on_cpu.Issue();
  const ChainResult g = on_gpu.Read(), h = on_cpu.Read();
  EXPECT_EQ(CountBitDifferences(g.scores, h.scores, "scores"), 0);
  EXPECT_EQ(CountBitDifferences(g.best_scores, h.best_scores, "best scores"), 0);
  EXPECT_EQ(g.best_ids, h.best_ids);
  ASSERT_EQ(g.indices, h.indices);
  int bad = 0;
  for (size_t i = 0; i < g.weights.size(); ++i)
    if (!(std::fabs(g.weights[i] - h.weights[i]) <= SoftmaxTolerance(c.knn, h.weights[i])) &&
        ++bad <= 5)
      ADD_FAILURE() << "weight [" << i << "] gpu " << g.weights[i] << " cpu " << h.weights[i];
  EXPECT_EQ(bad, 0);
  // y through the weights' difference, then the gate (the file's header derives both).
  bad = 0;
  const int per_row = c.per_row();
  for (int64_t r = 0; r < c.rows; ++r) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(c.logit[r])));
    for (int i = 0; i < c.d; ++i) {
      double dy = 0, mag = 0, ungated = 0;
      for (int j = 0; j < per_row; ++j) {
        const size_t at = r * per_row + j;
        const double v = PackedValue(c.values, h.indices[at], i);
        dy += std::fabs(static_cast<double>(g.weights[at]) - h.weights[at]) * std::fabs(v);
        mag += (std::fabs(g.weights[at]) + std::fabs(h.weights[at])) * std::fabs(v);
        ungated += static_cast<double>(h.weights[at]) * v;
      }
      const double tol = (dy + per_row * kU * mag) * s + 12 * kU * std::fabs(ungated * s) + 1e-37;
      const size_t at = r * c.d + i;
      if (!(std::fabs(g.y[at] - h.y[at]) <= tol) && ++bad <= 5)
        ADD_FAILURE() << "y[" << r << "][" << i << "] gpu " << g.y[at] << " cpu " << h.y[at]
                      << " tol " << tol;
    }
  }
  EXPECT_EQ(bad, 0);
}

// The five ops captured into a CUDA graph replay what they compute directly, bit for bit, with
// the data behind the same pointers at launch time.
TEST(CudaProductKey, GraphReplaysTheOps) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  std::mt19937 rng(7);
  Chain c = MakeChain(6, rng);
  ChainBuffers direct(gpu.get(), c), graphed(gpu.get(), c);
  gpu->BeginGraph();
  graphed.Issue();
  std::string error;
  const std::unique_ptr<BackendGraph> graph = gpu->EndGraph(&error);
  ASSERT_NE(graph, nullptr) << error;
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {
      c.query = RandomNormal(c.query.size(), rng);
      direct.SetQuery(c.query);
      graphed.SetQuery(c.query);
    }
    ASSERT_TRUE(gpu->LaunchGraph(*graph));
    direct.Issue();
    const ChainResult g = graphed.Read(), d = direct.Read();
    const std::string what = "round " + std::to_string(round);
    EXPECT_EQ(CountBitDifferences(g.scores, d.scores, what + " scores"), 0);
    EXPECT_EQ(g.best_ids, d.best_ids) << what;
    EXPECT_EQ(CountBitDifferences(g.weights, d.weights, what + " weights"), 0);
    EXPECT_EQ(g.indices, d.indices) << what;
    EXPECT_EQ(CountBitDifferences(g.y, d.y, what + " y"), 0);
  }
}

}  // namespace
}  // namespace engram
