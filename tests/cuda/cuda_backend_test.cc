// CudaBackend through the Backend interface: its memory (staged uploads across arena growth,
// write-after-read order of an Upload behind earlier ops, the caching allocator), Resident
// weights + Linear against CpuBackend, the unfused Engram gate, a small layer run by the same
// code on both backends, and the Engram row path: DequantRows against row_math.h's DequantRow
// (bitwise: both are exact conversions), and host tables read by FetchPackedRows, with and
// without the device row cache, against the host rows byte for byte, with their stats.
//
// Tolerances, with u = 2^-24 (float unit roundoff):
//  - Linear. The device rounds the weights (Resident) and the activations (ConvertToBf16) to
//    bf16, 8 significant bits, so each is within 2^-9 relative of the float the CPU multiplies:
//    |x'w' - xw| <= (2^-8 + 2^-18)|xw|. The fp32 sums differ besides: k u sum|xw| on the CPU,
//    4 k u on tensor cores (gemm_test.cc), times 1.01 for sum|x'w'|; the bias add is one more
//    rounding each side, 2u(|b| + 1.01 S). With S = sum_k |x_k w_k| (2^-17 = 2^-18 + 2^-18
//    takes in the rounding products and 2.02u S, 6ku the 5.04ku of the sums):
//      |gpu - cpu| <= (2^-8 + 2^-17 + 6 k u) S + 4u |b|.
//  - The layer (h = broadcast(x0); hn = RmsNormBranches(h); xn = RmsNorm(BranchMean(hn)), in
//    place; g = Wg xn; v = Wv xn + bv; a = SwiGlu(g, v); d = Wd a; AddToBranches(d, h);
//    GatherRows) is compared stage by stage, each stage's bound taking the *measured* difference
//    of its inputs (dx = |x_gpu - x_cpu|) plus its own rounding, so bounds do not compound:
//    xn: float math in a different order on each side, within (3D + 40)u relative when the
//        branch mean does not cancel (branch weights are drawn near 1): 2^-14 of the row's
//        largest |xn| bounds the difference with room;
//    Linear of a differing input: sum|W| dx + (2^-8 + 2^-17 + 6ku) sum|W| (|x| + dx) + 4u|b|,
//        as above with x_gpu = x_cpu + dx;
//    a = silu(g) v: 1.1 dg (|v| + dv) + |silu(g)| dv (SiLU' <= 1.1), plus 2^-20 |a| for the
//        two sides' expf and roundings (elementwise_ops_test.cc's SwiGLU bound);
//    out = x0 + d: dd + 2u(|x0| + |d| + dd); the broadcast and the gather copy exactly.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engram/kernels/backend.h"
#include "engram/kernels/dtype.h"
#include "engram/kernels/row_math.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::CudaBackend;
using cuda::testing::kU;
using cuda::testing::RandomNormal;

std::unique_ptr<CudaBackend> CreateCuda() {
  std::string error;
  auto b = CudaBackend::Create(0, &error);
  EXPECT_NE(b, nullptr) << error;
  return b;
}

template <typename T>
BackendBuffer ToBackend(Backend& b, const std::vector<T>& host) {
  BackendBuffer buf(&b, host.size() * sizeof(T));
  b.Upload(buf.get(), host.data(), buf.bytes());
  return buf;
}

template <typename T = float>
std::vector<T> FromBackend(Backend& b, const BackendBuffer& buf, size_t n) {
  std::vector<T> host(n);
  b.Download(host.data(), buf.get(), n * sizeof(T));
  return host;
}

uint32_t Pattern(uint32_t i, uint32_t j) { return i * 0x9e3779b9u ^ (j * 0x85ebca6bu + 1); }

TEST(CudaBackend, UploadsBeyondTheStagingArenaArriveIntact) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  // One step without a sync point: large uploads that each overflow the arena (so it is replaced
  // with copies from the old one still in flight), from one host vector rewritten as soon as each
  // Upload returns; then many small ones; then one that bypasses staging.
  const size_t big = CudaBackend::kInitialStagingBytes * 3 / 2 / sizeof(uint32_t);
  const int kBig = 8;
  std::vector<uint32_t> src(big);
  std::vector<BackendBuffer> bigs;
  for (int i = 0; i < kBig; ++i) {
    for (size_t j = 0; j < big; ++j) src[j] = Pattern(i, static_cast<uint32_t>(j));
    bigs.emplace_back(gpu.get(), big * sizeof(uint32_t));
    gpu->Upload(bigs.back().get(), src.data(), big * sizeof(uint32_t));
  }
  const int kSmall = 3000;
  const size_t small = 500;  // 2000 B: 6 MB in all, several arenas' worth
  BackendBuffer slices(gpu.get(), kSmall * small * sizeof(uint32_t));
  std::vector<uint32_t> piece(small);
  for (int i = 0; i < kSmall; ++i) {
    for (size_t j = 0; j < small; ++j) piece[j] = Pattern(1000 + i, static_cast<uint32_t>(j));
    gpu->Upload(slices.get<uint32_t>() + i * small, piece.data(), small * sizeof(uint32_t));
  }
  const size_t bulk = CudaBackend::kMaxStagedUploadBytes / sizeof(uint32_t) + 1024;
  std::vector<uint32_t> bulk_src(bulk);
  for (size_t j = 0; j < bulk; ++j) bulk_src[j] = Pattern(77, static_cast<uint32_t>(j));
  BackendBuffer bulk_buf = ToBackend(*gpu, bulk_src);
  std::fill(src.begin(), src.end(), 0u);
  std::fill(bulk_src.begin(), bulk_src.end(), 0u);

  for (int i = 0; i < kBig; ++i) {
    const auto got = FromBackend<uint32_t>(*gpu, bigs[i], big);
    size_t bad = 0;
    for (size_t j = 0; j < big; ++j) bad += got[j] != Pattern(i, static_cast<uint32_t>(j));
    EXPECT_EQ(bad, 0u) << "large upload " << i;
  }
  const auto got = FromBackend<uint32_t>(*gpu, slices, kSmall * small);
  size_t bad = 0;
  for (int i = 0; i < kSmall; ++i)
    for (size_t j = 0; j < small; ++j)
      bad += got[i * small + j] != Pattern(1000 + i, static_cast<uint32_t>(j));
  EXPECT_EQ(bad, 0u) << "small uploads";
  const auto got_bulk = FromBackend<uint32_t>(*gpu, bulk_buf, bulk);
  bad = 0;
  for (size_t j = 0; j < bulk; ++j) bad += got_bulk[j] != Pattern(77, static_cast<uint32_t>(j));
  EXPECT_EQ(bad, 0u) << "bulk upload";
}

// Uploads overlap the ops before them (backend.h: their destinations are not in use since the
// last sync point), and each op still sees the data uploaded before it: a fresh destination per
// round, as the model's per-Engram-layer row buffers are. Integer-valued floats keep every sum
// exact.
TEST(CudaBackend, UploadsOverlapEarlierOpsAndArriveBeforeLaterOnes) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  const int64_t rows = 1024, dim = 1024;  // 4 MiB per add: long enough to race a copy
  const int kRounds = 16;
  BackendBuffer acc = ToBackend(*gpu, std::vector<float>(rows * dim, 0.f));
  std::vector<BackendBuffer> delta;
  for (int i = 0; i < kRounds; ++i) delta.emplace_back(gpu.get(), rows * dim * sizeof(float));
  std::vector<float> host(rows * dim);
  for (int i = 0; i < kRounds; ++i) {
    std::fill(host.begin(), host.end(), static_cast<float>(i + 1));
    gpu->Upload(delta[i].get(), host.data(), host.size() * sizeof(float));
    gpu->AddToBranches(delta[i].get<float>(), rows, 1, static_cast<int>(dim), acc.get<float>());
  }
  const auto got = FromBackend(*gpu, acc, rows * dim);
  const float want = kRounds * (kRounds + 1) / 2.0f;
  size_t bad = 0;
  for (float v : got) bad += v != want;
  EXPECT_EQ(bad, 0u);
}

TEST(CudaBackend, FreedBlocksAreReused) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  gpu->Free(nullptr);
  void* a = gpu->Allocate(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
  gpu->Free(a);
  EXPECT_EQ(gpu->cached_bytes(), 1024u);
  void* b = gpu->Allocate(900);  // the same 1 KiB class
  EXPECT_EQ(b, a);
  EXPECT_EQ(gpu->cached_bytes(), 0u);
  void* c = gpu->Allocate(2000);  // another class: a new block
  EXPECT_NE(c, b);
  void* d = gpu->Allocate(size_t{3} << 20);  // the 4 MiB class
  gpu->Free(d);
  void* e = gpu->Allocate(size_t{7} << 19);  // 3.5 MiB: the same class
  EXPECT_EQ(e, d);
  void* z = gpu->Allocate(0);
  EXPECT_NE(z, nullptr);
  // A reused block holds data like a new one.
  const std::vector<float> x = {1.f, 2.f, 3.f};
  gpu->Upload(e, x.data(), sizeof(float) * x.size());
  std::vector<float> back(3);
  gpu->Download(back.data(), e, sizeof(float) * back.size());
  EXPECT_EQ(back, x);
  for (void* p : {b, c, e, z}) gpu->Free(p);
  const auto [free_bytes, total] = gpu->FreeMemory();
  EXPECT_GT(free_bytes, 0u);
  EXPECT_GE(total, free_bytes);
}

// S = sum_k |x_k w_k| of each output, for the Linear bound.
std::vector<double> AbsProducts(const std::vector<float>& x, int64_t m, const std::vector<float>& w,
                                int64_t n, int64_t k) {
  std::vector<double> s(m * n, 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t o = 0; o < n; ++o)
      for (int64_t i = 0; i < k; ++i)
        s[r * n + o] += std::fabs(double{x[r * k + i]} * w[o * k + i]);
  return s;
}

double LinearRel(int64_t k, double extra = 0.0) {
  return std::ldexp(1.0, -8) + std::ldexp(1.0, -17) + extra + 6.0 * k * kU;
}

TEST(CudaBackend, ResidentWeightsLinearMatchesCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(11);
  struct Case {
    int64_t m, n, k;
  };
  for (const Case& c : {Case{1, 96, 128}, Case{5, 200, 64}, Case{37, 64, 320}}) {
    const auto x = RandomNormal(c.m * c.k, rng), w = RandomNormal(c.n * c.k, rng, 0.1f);
    const auto bias = RandomNormal(c.n, rng);
    const Matrix host_w{w.data(), DType::kF32, c.n, c.k};
    const Matrix dw = gpu->Resident(host_w);
    EXPECT_EQ(dw.dtype, DType::kBF16);
    EXPECT_EQ(dw.rows, c.n);
    EXPECT_EQ(dw.cols, c.k);
    // The same weights handed over as bf16 go through unchanged.
    std::vector<uint16_t> w_bf16(w.size());
    for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = FloatToBf16(w[i]);
    const Matrix dw16 = gpu->Resident(Matrix{w_bf16.data(), DType::kBF16, c.n, c.k});
    const float* dbias = gpu->Resident(bias.data(), c.n);
    const auto s = AbsProducts(x, c.m, w, c.n, c.k);

    BackendBuffer dx = ToBackend(*gpu, x), dy(gpu.get(), c.m * c.n * sizeof(float));
    for (bool with_bias : {false, true}) {
      for (const Matrix* mat : {&dw, &dw16}) {
        std::vector<float> want(c.m * c.n);
        cpu.Linear(x.data(), c.m, host_w, with_bias ? bias.data() : nullptr, want.data());
        gpu->Linear(dx.get<float>(), c.m, *mat, with_bias ? dbias : nullptr, dy.get<float>());
        const auto got = FromBackend(*gpu, dy, c.m * c.n);
        int bad = 0;
        for (int64_t i = 0; i < c.m * c.n; ++i) {
          const double tol =
              LinearRel(c.k) * s[i] + (with_bias ? 4 * kU * std::fabs(bias[i % c.n]) : 0.0);
          if (!(std::fabs(double{got[i]} - want[i]) <= tol) && ++bad <= 5)
            ADD_FAILURE() << "m=" << c.m << " n=" << c.n << " k=" << c.k << " bias=" << with_bias
                          << " bf16 input=" << (mat == &dw16) << " [" << i << "] gpu " << got[i]
                          << " cpu " << want[i] << " tol " << tol;
        }
      }
    }
  }
}

// The gate without the fused conv norm (z == nullptr) writes the same gates and u as the fused
// one and nothing else.
TEST(CudaBackend, EngramGateUnfusedMatchesFused) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  std::mt19937 rng(5);
  const int64_t rows = 6;
  const int M = 2, D = 96;
  BackendBuffer h = ToBackend(*gpu, RandomNormal(rows * M * D, rng)),
                keys = ToBackend(*gpu, RandomNormal(M * rows * D, rng)),
                value = ToBackend(*gpu, RandomNormal(rows * D, rng)),
                kn = ToBackend(*gpu, RandomNormal(M * D, rng)),
                qn = ToBackend(*gpu, RandomNormal(M * D, rng)),
                cn = ToBackend(*gpu, RandomNormal(M * D, rng));
  BackendBuffer gates[2], gated[2], z(gpu.get(), rows * M * D * sizeof(float));
  const std::vector<float> poison(rows * M * D, -7.f);
  gpu->Upload(z.get(), poison.data(), z.bytes());
  for (int fused = 0; fused < 2; ++fused) {
    gates[fused] = BackendBuffer(gpu.get(), rows * M * sizeof(float));
    gated[fused] = BackendBuffer(gpu.get(), rows * M * D * sizeof(float));
    EngramGateParams p;
    p.rows = rows;
    p.hidden = D;
    p.branches = M;
    p.hidden_in = h.get<float>();
    p.keys = keys.get<float>();
    p.value = value.get<float>();
    p.key_norm = kn.get<float>();
    p.query_norm = qn.get<float>();
    p.gates = gates[fused].get<float>();
    p.gated = gated[fused].get<float>();
    if (fused) {
      // z stays the poison in the unfused run, which comes first.
      EXPECT_EQ(FromBackend(*gpu, z, poison.size()), poison);
      p.conv_norm = cn.get<float>();
      p.z = z.get<float>();
    }
    gpu->EngramGate(p);
  }
  EXPECT_EQ(FromBackend(*gpu, gates[0], rows * M), FromBackend(*gpu, gates[1], rows * M));
  EXPECT_EQ(FromBackend(*gpu, gated[0], rows * M * D), FromBackend(*gpu, gated[1], rows * M * D));
}

struct LayerWeights {
  int M = 2, D = 64, F = 128;
  float eps = 1e-5f;
  std::vector<float> branch_norm, norm, wg, wv, bv, wd;
};

struct LayerTrace {
  std::vector<float> xn, g, v, a, d, out;
};

// The layer of the tolerance comment, run by the same code on either backend.
LayerTrace RunLayer(Backend& b, const LayerWeights& w, const std::vector<float>& x0, int64_t rows,
                    const std::vector<int32_t>& index) {
  const int M = w.M, D = w.D, F = w.F;
  const float* branch_norm = b.Resident(w.branch_norm.data(), M * D);
  const float* norm = b.Resident(w.norm.data(), D);
  const float* bv = b.Resident(w.bv.data(), F);
  const Matrix wg = b.Resident(Matrix{w.wg.data(), DType::kF32, F, D});
  const Matrix wv = b.Resident(Matrix{w.wv.data(), DType::kF32, F, D});
  const Matrix wd = b.Resident(Matrix{w.wd.data(), DType::kF32, D, F});

  const int64_t n = static_cast<int64_t>(index.size());
  BackendBuffer x = ToBackend(b, x0), idx = ToBackend(b, index);
  BackendBuffer h(&b, rows * M * D * sizeof(float)), hn(&b, rows * M * D * sizeof(float)),
      xn(&b, rows * D * sizeof(float)), g(&b, rows * F * sizeof(float)),
      v(&b, rows * F * sizeof(float)), a(&b, rows * F * sizeof(float)),
      d(&b, rows * D * sizeof(float)), out(&b, n * M * D * sizeof(float));
  b.BroadcastBranches(x.get<float>(), rows, M, D, h.get<float>());
  b.RmsNormBranches(h.get<float>(), rows, M, D, branch_norm, w.eps, hn.get<float>());
  b.BranchMean(hn.get<float>(), rows, M, D, xn.get<float>());
  b.RmsNorm(xn.get<float>(), rows, D, norm, w.eps, xn.get<float>());  // in place
  b.Linear(xn.get<float>(), rows, wg, nullptr, g.get<float>());
  b.Linear(xn.get<float>(), rows, wv, bv, v.get<float>());
  b.SwiGlu(g.get<float>(), v.get<float>(), rows * F, a.get<float>());
  b.Linear(a.get<float>(), rows, wd, nullptr, d.get<float>());
  b.AddToBranches(d.get<float>(), rows, M, D, h.get<float>());
  b.GatherRows(h.get<float>(), idx.get<int32_t>(), n, M * D, out.get<float>());

  LayerTrace t;
  t.out = FromBackend(b, out, n * M * D);
  t.xn = FromBackend(b, xn, rows * D);
  t.g = FromBackend(b, g, rows * F);
  t.v = FromBackend(b, v, rows * F);
  t.a = FromBackend(b, a, rows * F);
  t.d = FromBackend(b, d, rows * D);
  return t;
}

std::vector<float> AbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = std::fabs(a[i] - b[i]);
  return d;
}

// The Linear bound of the header comment for y = W x (+ b) when x differs by dx between sides.
std::vector<double> LinearTol(const std::vector<float>& x, const std::vector<float>& dx, int64_t m,
                              const std::vector<float>& w, int64_t n, int64_t k,
                              const std::vector<float>* bias) {
  std::vector<float> x_abs(x.size());
  for (size_t i = 0; i < x.size(); ++i) x_abs[i] = std::fabs(x[i]) + dx[i];
  const auto wide = AbsProducts(x_abs, m, w, n, k), prop = AbsProducts(dx, m, w, n, k);
  std::vector<double> tol(m * n);
  for (int64_t i = 0; i < m * n; ++i)
    tol[i] = prop[i] + LinearRel(k) * wide[i] +
             (bias != nullptr ? 4 * kU * std::fabs((*bias)[i % n]) : 0.0);
  return tol;
}

// Returns the largest |got - want| / tol.
double ExpectWithin(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                    const std::vector<double>& tol) {
  EXPECT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double diff = std::fabs(double{got[i]} - want[i]);
    worst = std::max(worst, diff / tol[i]);
    if (!(diff <= tol[i]) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "] gpu " << got[i] << " cpu " << want[i] << " tol "
                    << tol[i];
  }
  return worst;
}

TEST(CudaBackend, LayerMatchesCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  CpuBackend cpu(2);
  std::mt19937 rng(23);
  LayerWeights w;
  const int M = w.M, D = w.D, F = w.F;
  w.branch_norm = RandomNormal(M * D, rng, 0.25f);
  for (float& x : w.branch_norm) x += 1.f;
  w.norm = RandomNormal(D, rng, 0.25f);
  for (float& x : w.norm) x += 1.f;
  w.wg = RandomNormal(F * D, rng, 0.15f);
  w.wv = RandomNormal(F * D, rng, 0.15f);
  w.bv = RandomNormal(F, rng, 0.1f);
  w.wd = RandomNormal(D * F, rng, 0.1f);
  const int64_t rows = 9;
  const auto x0 = RandomNormal(rows * D, rng, 2.f);
  const std::vector<int32_t> index = {8, 0, 3, 3};

  const LayerTrace c = RunLayer(cpu, w, x0, rows, index);
  const LayerTrace g = RunLayer(*gpu, w, x0, rows, index);

  std::vector<double> tol_xn(rows * D);
  for (int64_t r = 0; r < rows; ++r) {
    float row_max = 0.f;
    for (int j = 0; j < D; ++j) row_max = std::max(row_max, std::fabs(c.xn[r * D + j]));
    for (int j = 0; j < D; ++j) tol_xn[r * D + j] = std::ldexp(double{row_max}, -14);
  }
  ExpectWithin("xn", g.xn, c.xn, tol_xn);

  const auto dxn = AbsDiff(g.xn, c.xn);
  ExpectWithin("g", g.g, c.g, LinearTol(c.xn, dxn, rows, w.wg, F, D, nullptr));
  ExpectWithin("v", g.v, c.v, LinearTol(c.xn, dxn, rows, w.wv, F, D, &w.bv));

  const auto dg = AbsDiff(g.g, c.g), dv = AbsDiff(g.v, c.v);
  std::vector<double> tol_a(rows * F);
  for (int64_t i = 0; i < rows * F; ++i)
    tol_a[i] = 1.1 * dg[i] * (std::fabs(c.v[i]) + dv[i]) + std::fabs(Silu(c.g[i])) * dv[i] +
               std::ldexp(std::fabs(double{c.a[i]}), -20);
  ExpectWithin("a", g.a, c.a, tol_a);

  const auto tol_d = LinearTol(c.a, AbsDiff(g.a, c.a), rows, w.wd, D, F, nullptr);
  const double worst = ExpectWithin("d", g.d, c.d, tol_d);
  RecordProperty("worst_d_error_over_tolerance", std::to_string(worst));
  // Not vacuous: the bound is a small fraction of the values it checks.
  double d_sum = 0.0, tol_sum = 0.0;
  for (int64_t i = 0; i < rows * D; ++i) {
    d_sum += std::fabs(c.d[i]);
    tol_sum += tol_d[i];
  }
  EXPECT_LT(tol_sum, 0.1 * d_sum);

  const auto dd = AbsDiff(g.d, c.d);
  std::vector<double> tol_out(c.out.size());
  for (size_t i = 0; i < index.size(); ++i)
    for (int m = 0; m < M; ++m)
      for (int j = 0; j < D; ++j) {
        const int64_t r = index[i] * D + j;
        tol_out[(i * M + m) * D + j] =
            dd[r] + 2 * kU * (std::fabs(x0[r]) + std::fabs(c.d[r]) + dd[r]);
      }
  ExpectWithin("out", g.out, c.out, tol_out);
}

// --- Engram rows ----------------------------------------------------------------------------

// `rows` packed rows of d values in `dtype` (fp8: with d / 32 ue8m0 scale bytes after them) of
// normal values, as table_store.h lays them out. No NaN: fp8 bytes come from floats, and scale
// bytes stay near 2^0 (no 0xff NaN, no subnormal 2^-127 a flush-to-zero device might drop).
std::vector<uint8_t> PackedRows(int64_t rows, int d, DType dtype, int64_t packed_bytes,
                                std::mt19937& rng) {
  std::vector<uint8_t> out(static_cast<size_t>(rows * packed_bytes));
  std::uniform_int_distribution<int> scale(120, 134);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = out.data() + r * packed_bytes;
    const auto v = RandomNormal(d, rng, 3.f);
    if (dtype == DType::kBF16) {
      for (int i = 0; i < d; ++i) {
        const uint16_t h = FloatToBf16(v[i]);
        std::memcpy(row + 2 * i, &h, 2);
      }
    } else {
      for (int i = 0; i < d; ++i) row[i] = FloatToFp8E4M3(v[i]);
      for (int b = 0; b < d / kFp8BlockSize; ++b) row[d + b] = static_cast<uint8_t>(scale(rng));
    }
  }
  return out;
}

int64_t PackedBytes(int d, DType dtype) {
  return int64_t{d} * DTypeSize(dtype) + (dtype == DType::kF8E4M3 ? d / kFp8BlockSize : 0);
}

std::vector<int64_t> DistinctIds(int n, int64_t rows, std::mt19937& rng) {
  std::vector<int64_t> ids;
  std::set<int64_t> used;
  std::uniform_int_distribution<int64_t> pick(0, rows - 1);
  while (static_cast<int>(ids.size()) < n)
    if (const int64_t id = pick(rng); used.insert(id).second) ids.push_back(id);
  return ids;
}

// Rows of `got` ([ids.size()][packed_bytes]) that differ from the host table's rows ids[i].
size_t BadRows(const std::vector<uint8_t>& got, const std::vector<uint8_t>& table,
               int64_t packed_bytes, const std::vector<int64_t>& ids) {
  size_t bad = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    bad += std::memcmp(got.data() + i * packed_bytes, table.data() + ids[i] * packed_bytes,
                       packed_bytes) != 0;
  return bad;
}

TEST(CudaBackend, DequantRowsMatchesCpuReference) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  std::mt19937 rng(31);
  // d = 100 leaves the last lanes of a warp idle on bf16; fp8 needs whole 32-value blocks.
  for (const auto& [dtype, d] : {std::pair{DType::kBF16, 100}, std::pair{DType::kBF16, 1024},
                                 std::pair{DType::kF8E4M3, 160}, std::pair{DType::kF8E4M3, 1024}}) {
    SCOPED_TRACE(::testing::Message() << "dtype " << static_cast<int>(dtype) << " d " << d);
    const int64_t packed_bytes = PackedBytes(d, dtype);
    const int64_t num_packed = 37;
    const auto packed = PackedRows(num_packed, d, dtype, packed_bytes, rng);
    // More outputs than rows, so rows repeat (every row at least once, then random ones).
    const int64_t rows = 301;
    std::vector<int32_t> src_row(rows);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(num_packed - 1));
    for (int64_t r = 0; r < rows; ++r)
      src_row[r] = r < num_packed ? static_cast<int32_t>(num_packed - 1 - r) : pick(rng);
    std::shuffle(src_row.begin(), src_row.end(), rng);

    BackendBuffer d_packed = ToBackend(*gpu, packed);
    BackendBuffer d_src = ToBackend(*gpu, src_row);
    BackendBuffer d_out(gpu.get(), rows * d * sizeof(float));
    gpu->DequantRows(d_packed.get(), packed_bytes, dtype, d, d_src.get<int32_t>(), rows,
                     d_out.get<float>());
    const auto got = FromBackend(*gpu, d_out, rows * d);

    std::vector<float> want(d);
    size_t bad = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* row = packed.data() + src_row[r] * packed_bytes;
      DequantRow(row, row + d, dtype, d, want.data());
      for (int i = 0; i < d; ++i)
        if (!cuda::testing::SameFloat(got[r * d + i], want[i]) && ++bad <= 5)
          ADD_FAILURE() << "row " << r << " (packed " << src_row[r] << ") [" << i << "]: gpu "
                        << got[r * d + i] << " cpu " << want[i];
    }
    EXPECT_EQ(bad, 0u);
  }
}

TEST(CudaBackend, HostTableWithoutCacheFetchesRowsZeroCopy) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  std::mt19937 rng(32);
  // Ordinary host memory, as the RAM tier holds a table; 66-byte fp8 rows (d = 64 and two scale
  // bytes) take the gather's narrow-load path.
  const int d = 64;
  const DType dtype = DType::kF8E4M3;
  const int64_t packed_bytes = PackedBytes(d, dtype), rows = 20000;
  const auto host = PackedRows(rows, d, dtype, packed_bytes, rng);
  const int n = 3000;
  std::string error;
  // A cache too small for one set of ways is no cache.
  const size_t tiny_cache = static_cast<size_t>(packed_bytes) * 3;
  auto table = gpu->OpenHostTable(PackedTable{host.data(), rows, packed_bytes, dtype, d},
                                  tiny_cache, n, &error);
  ASSERT_NE(table, nullptr) << error;
  EXPECT_EQ(table->stats().lookups, 0u);

  BackendBuffer d_out(gpu.get(), n * packed_bytes);
  const auto ids = DistinctIds(n, rows, rng);
  BackendBuffer d_ids = ToBackend(*gpu, ids);
  gpu->FetchPackedRows(*table, d_ids.get<int64_t>(), n, d_out.get());
  gpu->FetchPackedRows(*table, d_ids.get<int64_t>(), 0, d_out.get());  // a no-op
  EXPECT_EQ(BadRows(FromBackend<uint8_t>(*gpu, d_out, n * packed_bytes), host, packed_bytes, ids),
            0u);
  BackendTableStats s = table->stats();
  EXPECT_EQ(s.lookups, static_cast<uint64_t>(n));
  EXPECT_EQ(s.transferred, static_cast<uint64_t>(n));
  EXPECT_EQ(s.cache_hits, 0u);

  // The same rows again cross PCIe again.
  gpu->FetchPackedRows(*table, d_ids.get<int64_t>(), n, d_out.get());
  gpu->Synchronize();
  s = table->stats();
  EXPECT_EQ(s.lookups, 2u * n);
  EXPECT_EQ(s.transferred, 2u * n);
  EXPECT_EQ(s.cache_hits, 0u);
  table.reset();  // unregisters before `host` goes
}

TEST(CudaBackend, HostTableWithCacheHitsRepeatedRows) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  std::mt19937 rng(33);
  const int d = 64;
  const DType dtype = DType::kBF16;
  const int64_t packed_bytes = PackedBytes(d, dtype), rows = 50000;
  const auto host = PackedRows(rows, d, dtype, packed_bytes, rng);
  const int n = 600;
  std::string error;
  // About 1870 rows (234 sets of 8; a row costs its 128 bytes plus a tag and a stamp): 600 ids
  // average under 3 per set, so all but a rare few are cached, and the second call cannot evict
  // the first call's rows it repeats (a call never evicts a way it uses).
  const size_t cache_bytes = 256 << 10;
  auto table = gpu->OpenHostTable(PackedTable{host.data(), rows, packed_bytes, dtype, d},
                                  cache_bytes, n, &error);
  ASSERT_NE(table, nullptr) << error;

  const auto first = DistinctIds(n, rows, rng);
  // Half of the first call's rows and half new ones, shuffled.
  std::vector<int64_t> second(first.begin(), first.begin() + n / 2);
  const std::set<int64_t> in_first(first.begin(), first.end());
  for (int64_t id : DistinctIds(2 * n, rows, rng))
    if (static_cast<int>(second.size()) < n && !in_first.count(id)) second.push_back(id);
  ASSERT_EQ(static_cast<int>(second.size()), n);
  std::shuffle(second.begin(), second.end(), rng);

  // stats() from another thread while the engine thread fetches (as a metrics scrape would): the
  // counters only grow, and hits + transferred never exceed lookups.
  std::atomic<bool> done{false};
  std::atomic<int> reader_errors{0};
  std::thread reader([&] {
    BackendTableStats last;
    while (!done.load()) {
      const BackendTableStats s = table->stats();
      if (s.lookups < last.lookups || s.cache_hits < last.cache_hits ||
          s.transferred < last.transferred || s.cache_hits + s.transferred > s.lookups)
        ++reader_errors;
      last = s;
    }
  });

  BackendBuffer d_out(gpu.get(), n * packed_bytes);
  BackendBuffer d_first = ToBackend(*gpu, first);
  gpu->FetchPackedRows(*table, d_first.get<int64_t>(), n, d_out.get());
  EXPECT_EQ(BadRows(FromBackend<uint8_t>(*gpu, d_out, n * packed_bytes), host, packed_bytes, first),
            0u);
  const BackendTableStats s1 = table->stats();
  EXPECT_EQ(s1.lookups, static_cast<uint64_t>(n));
  EXPECT_EQ(s1.cache_hits, 0u);
  EXPECT_EQ(s1.transferred, static_cast<uint64_t>(n));

  BackendBuffer d_second = ToBackend(*gpu, second);
  gpu->FetchPackedRows(*table, d_second.get<int64_t>(), n, d_out.get());
  EXPECT_EQ(
      BadRows(FromBackend<uint8_t>(*gpu, d_out, n * packed_bytes), host, packed_bytes, second), 0u);
  const BackendTableStats s2 = table->stats();
  EXPECT_EQ(s2.lookups, 2u * n);
  EXPECT_GT(s2.cache_hits, 0u);
  EXPECT_LE(s2.cache_hits, static_cast<uint64_t>(n / 2));  // only repeated rows can hit
  EXPECT_EQ(s2.cache_hits + s2.transferred, s2.lookups);

  done = true;
  reader.join();
  EXPECT_EQ(reader_errors.load(), 0);
  table.reset();
}

// Step graphs (CUDA graphs): recorded ops replay with whatever their buffers hold at launch,
// bit for bit what the same ops give run directly (same kernels, same launch shapes); a graph
// whose GEMM scratch has moved since is refused, and a recording during which that scratch had
// to grow is not instantiated, while the backend goes on working directly.
TEST(CudaBackend, StepGraphReplaysTheRecordedOpsOnNewData) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  auto gpu = CreateCuda();
  ASSERT_NE(gpu, nullptr);
  ASSERT_TRUE(gpu->SupportsGraphs());
  std::mt19937 rng(5);
  const int64_t m = 6, n = 96, k = 128;
  const auto w = RandomNormal(n * k, rng, 0.1f), norm = RandomNormal(n, rng);
  const Matrix dw = gpu->Resident(Matrix{w.data(), DType::kF32, n, k});
  const float* dnorm = gpu->Resident(norm.data(), n);
  BackendBuffer dx(gpu.get(), m * k * sizeof(float)), dy(gpu.get(), m * n * sizeof(float)),
      dz(gpu.get(), m * n * sizeof(float));
  auto ops = [&] {
    gpu->Linear(dx.get<float>(), m, dw, nullptr, dy.get<float>());
    gpu->RmsNorm(dy.get<float>(), m, static_cast<int>(n), dnorm, 1e-5f, dz.get<float>());
    gpu->SwiGlu(dy.get<float>(), dz.get<float>(), m * n, dz.get<float>());
  };
  // Directly first, which also grows the GEMM's scratch to this shape.
  std::vector<std::vector<float>> inputs, want;
  for (int i = 0; i < 3; ++i) {
    inputs.push_back(RandomNormal(m * k, rng));
    gpu->Upload(dx.get(), inputs.back().data(), dx.bytes());
    ops();
    want.push_back(FromBackend(*gpu, dz, m * n));
  }
  gpu->BeginGraph();
  ops();
  std::string error;
  const std::unique_ptr<BackendGraph> graph = gpu->EndGraph(&error);
  ASSERT_NE(graph, nullptr) << error;
  for (int i : {2, 0, 1}) {
    gpu->Upload(dx.get(), inputs[i].data(), dx.bytes());
    ASSERT_TRUE(gpu->LaunchGraph(*graph));
    const auto got = FromBackend(*gpu, dz, m * n);
    EXPECT_EQ(std::memcmp(got.data(), want[i].data(), got.size() * sizeof(float)), 0)
        << "replay of input " << i;
  }

  // A 64x larger GEMM moves the scratch: the graph is stale.
  const std::vector<float> zeros(64 * m * k, 0.f);
  BackendBuffer big_x = ToBackend(*gpu, zeros), big_y(gpu.get(), 64 * m * n * sizeof(float));
  gpu->Linear(big_x.get<float>(), 64 * m, dw, nullptr, big_y.get<float>());
  gpu->Synchronize();
  EXPECT_FALSE(gpu->LaunchGraph(*graph));

  // Recording a GEMM larger still: the scratch grows mid-capture, so no graph comes out.
  BackendBuffer huge_x(gpu.get(), 256 * m * k * sizeof(float)),
      huge_y(gpu.get(), 256 * m * n * sizeof(float));
  gpu->BeginGraph();
  gpu->Linear(huge_x.get<float>(), 256 * m, dw, nullptr, huge_y.get<float>());
  EXPECT_EQ(gpu->EndGraph(&error), nullptr);
  EXPECT_NE(error.find("grew"), std::string::npos) << error;
  // Direct ops still give the first answers.
  gpu->Upload(dx.get(), inputs[0].data(), dx.bytes());
  ops();
  const auto again = FromBackend(*gpu, dz, m * n);
  EXPECT_EQ(std::memcmp(again.data(), want[0].data(), again.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace engram
