// CPU backend ops against straightforward double-precision references on random inputs.
// Tolerance: every op is a float32 computation whose longest reduction has K terms; the
// float32 result differs from the exact one by at most ~K * 2^-24 * sum|terms| (standard dot
// product bound), so we compare |got - want| <= 1e-5 * (1 + sum|terms|) with K <= 300 here,
// which is ~5x above that bound and ~1000x below any real bug (a wrong index is O(1)).
#include <cmath>
#include <random>
#include <vector>

#include "engram/kernels/row_math.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace engram {
namespace {

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

constexpr float kPoison = 12345.0f;

TEST(CpuBackend, LinearMatchesReferenceF32AndBf16WithBias) {
  std::mt19937 rng(1);
  CpuBackend be(2);
  for (int64_t m : {1, 3, 7, 33}) {
    const int64_t n = 37, k = 75;
    auto x = Random(m * k, rng), w = Random(n * k, rng), b = Random(n, rng);
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = FloatToBf16(w[i]);
    for (bool bf16 : {false, true}) {
      Matrix mat{bf16 ? static_cast<const void*>(wb.data()) : w.data(),
                 bf16 ? DType::kBF16 : DType::kF32, n, k};
      std::vector<float> y(m * n, kPoison);
      be.Linear(x.data(), m, mat, b.data(), y.data());
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < n; ++j) {
          double s = b[j], mag = std::fabs(b[j]);
          for (int64_t i = 0; i < k; ++i) {
            const double wv = bf16 ? Bf16ToFloat(wb[j * k + i]) : w[j * k + i];
            s += wv * x[r * k + i];
            mag += std::fabs(wv * x[r * k + i]);
          }
          ASSERT_NEAR(y[r * n + j], s, 1e-5 * (1 + mag))
              << "m=" << m << " row " << r << " col " << j << " bf16=" << bf16;
        }
    }
  }
}

TEST(CpuBackend, RmsNormAndBranches) {
  std::mt19937 rng(2);
  CpuBackend be(2);
  const int rows = 5, M = 3, D = 48;
  auto x = Random(rows * M * D, rng, 3.0f);
  std::vector<std::vector<float>> w;
  std::vector<float> packed;
  for (int m = 0; m < M; ++m) w.push_back(Random(D, rng));
  for (auto& v : w) packed.insert(packed.end(), v.begin(), v.end());
  std::vector<float> y(x.size(), kPoison);
  be.RmsNormBranches(x.data(), rows, M, D, packed.data(), 1e-5f, y.data());
  for (int r = 0; r < rows; ++r)
    for (int m = 0; m < M; ++m) {
      const float* xr = &x[(r * M + m) * D];
      double ss = 0;
      for (int i = 0; i < D; ++i) ss += double(xr[i]) * xr[i];
      const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
      for (int i = 0; i < D; ++i)
        ASSERT_NEAR(y[(r * M + m) * D + i], xr[i] * inv * w[m][i],
                    1e-5 * (1 + std::fabs(xr[i] * inv * w[m][i])));
    }
}

TEST(CpuBackend, RopeRotatesHalfPairs) {
  std::mt19937 rng(3);
  CpuBackend be(1);
  const int heads = 2, hd = 8;
  auto x = Random(2 * heads * hd, rng);
  auto orig = x;
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
  const int64_t pos[2] = {0, 17};
  be.Rope(x.data(), 2, heads, hd, pos, inv.data());
  for (int r = 0; r < 2; ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < hd / 2; ++i) {
        const float* o = &orig[(r * heads + h) * hd];
        const double a = pos[r] * std::pow(10000.0, -2.0 * i / hd);
        EXPECT_NEAR(x[(r * heads + h) * hd + i], o[i] * std::cos(a) - o[i + hd / 2] * std::sin(a),
                    1e-5);
        EXPECT_NEAR(x[(r * heads + h) * hd + i + hd / 2],
                    o[i + hd / 2] * std::cos(a) + o[i] * std::sin(a), 1e-5);
      }
}

// Two sequences at different positions in one call, blocks scattered, GQA group of 2: equals
// dense causal attention computed per sequence.
TEST(CpuBackend, PagedAttentionEqualsDenseCausal) {
  std::mt19937 rng(4);
  CpuBackend be(2);
  const int nh = 4, nkv = 2, hd = 16, bs = 4, nblocks = 12;
  std::vector<float> kc(nblocks * bs * nkv * hd, kPoison), vc(kc.size(), kPoison);
  KvLayer kv{kc.data(), vc.data(), bs, nkv, hd};
  // Sequence 0: 6 tokens prefilled in one call; sequence 1: 3 tokens, then 2 more later.
  const std::vector<int32_t> tables = {7, 2, 5, 0};  // [2 sequences][stride 2]
  std::vector<std::vector<float>> allk(2), allv(2), allq(2);
  auto run = [&](int len0, int64_t pos0, int len1, int64_t pos1) {
    const int32_t rb[3] = {0, len0, len0 + len1};
    const int64_t pb[2] = {pos0, pos1};
    const AttentionBatch b{
        2, len0 + len1, rb, pb, tables.data(), 2, std::max(pos0 + len0, pos1 + len1)};
    const int T = len0 + len1;
    auto q = Random(T * nh * hd, rng), k = Random(T * nkv * hd, rng), v = Random(T * nkv * hd, rng);
    std::vector<float> out(T * nh * hd, kPoison);
    be.Attention(b, kv, q.data(), k.data(), v.data(), nh, out.data());
    for (int s = 0; s < 2; ++s)
      for (int r = rb[s]; r < rb[s + 1]; ++r) {
        allq[s].insert(allq[s].end(), q.begin() + r * nh * hd, q.begin() + (r + 1) * nh * hd);
        allk[s].insert(allk[s].end(), k.begin() + r * nkv * hd, k.begin() + (r + 1) * nkv * hd);
        allv[s].insert(allv[s].end(), v.begin() + r * nkv * hd, v.begin() + (r + 1) * nkv * hd);
      }
    for (int s = 0; s < 2; ++s)
      for (int r = rb[s]; r < rb[s + 1]; ++r) {
        const int64_t p = pb[s] + (r - rb[s]);
        for (int h = 0; h < nh; ++h) {
          const int g = h / (nh / nkv);
          std::vector<double> sc(p + 1);
          double mx = -1e30, sum = 0;
          for (int64_t j = 0; j <= p; ++j) {
            double d = 0;
            for (int i = 0; i < hd; ++i)
              d += double(allq[s][(p * nh + h) * hd + i]) * allk[s][(j * nkv + g) * hd + i];
            sc[j] = d / std::sqrt(double(hd));
            mx = std::max(mx, sc[j]);
          }
          for (auto& x : sc) sum += (x = std::exp(x - mx));
          for (int i = 0; i < hd; ++i) {
            double o = 0;
            for (int64_t j = 0; j <= p; ++j) o += sc[j] / sum * allv[s][(j * nkv + g) * hd + i];
            ASSERT_NEAR(out[(r * nh + h) * hd + i], o, 1e-5)
                << "seq " << s << " pos " << p << " head " << h;
          }
        }
      }
  };
  run(6, 0, 3, 0);
  run(1, 6, 2, 3);
}

TEST(CpuBackend, EngramGateMatchesFormula) {
  std::mt19937 rng(5);
  CpuBackend be(2);
  const int rows = 4, M = 2, D = 32;
  auto h = Random(rows * M * D, rng), keys = Random(M * rows * D, rng),
       value = Random(rows * D, rng);
  auto kn0 = Random(D, rng), kn1 = Random(D, rng), qn0 = Random(D, rng), qn1 = Random(D, rng);
  std::vector<float> kn = kn0, qn = qn0, cn = Random(M * D, rng);
  kn.insert(kn.end(), kn1.begin(), kn1.end());
  qn.insert(qn.end(), qn1.begin(), qn1.end());
  std::vector<float> gates(rows * M, kPoison), gated(rows * M * D, kPoison),
      z(gated.size(), kPoison);
  EngramGateParams p;
  p.rows = rows;
  p.hidden = D;
  p.branches = M;
  p.hidden_in = h.data();
  p.keys = keys.data();
  p.value = value.data();
  p.key_norm = kn.data();
  p.query_norm = qn.data();
  p.gates = gates.data();
  p.gated = gated.data();
  p.conv_norm = cn.data();
  p.z = z.data();
  be.EngramGate(p);
  for (int r = 0; r < rows; ++r)
    for (int m = 0; m < M; ++m) {
      auto norm = [&](const float* x, const float* w, int i) {
        double ss = 0;
        for (int j = 0; j < D; ++j) ss += double(x[j]) * x[j];
        return x[i] / std::sqrt(ss / D + 1.1920928955078125e-07) * w[i];
      };
      double dot = 0;
      for (int i = 0; i < D; ++i)
        dot += norm(&h[(r * M + m) * D], &qn[m * D], i) *
               norm(&keys[(m * rows + r) * D], &kn[m * D], i);
      const double s = dot / std::sqrt(double(D));
      const double sp = (s > 0 ? 1 : -1) * std::sqrt(std::max(std::fabs(s), 1e-6));
      const double alpha = 1 / (1 + std::exp(-sp));
      EXPECT_NEAR(gates[r * M + m], alpha, 1e-5);
      for (int i = 0; i < D; ++i)
        EXPECT_NEAR(gated[(r * M + m) * D + i], alpha * value[r * D + i], 1e-5);
      // The fused conv-input norm: RMSNorm(u) with eps 1e-5 and the branch's weights.
      const float* u = &gated[(r * M + m) * D];
      double ss = 0;
      for (int i = 0; i < D; ++i) ss += double(u[i]) * u[i];
      const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
      for (int i = 0; i < D; ++i)
        EXPECT_NEAR(z[(r * M + m) * D + i], u[i] * inv * cn[m * D + i],
                    1e-5 * (1 + std::fabs(u[i] * inv * cn[m * D + i])));
    }
}

TEST(CpuBackend, ShortConvUsesTapsAndZeroPadding) {
  std::mt19937 rng(6);
  CpuBackend be(1);
  const int C = 6, w = 3, rows = 2;
  auto weight = Random(C * w, rng), z = Random(rows * C, rng), u = Random(rows * C, rng),
       hist = Random(C, rng);
  // Row 0 has one tap from history and one missing (before t = 0); row 1 taps row 0 and history.
  const float* taps[4] = {nullptr, hist.data(), hist.data(), z.data()};
  std::vector<float> out(rows * C, kPoison);
  auto residual = Random(rows * C, rng);
  const auto residual_before = residual;
  // Row 1's z goes over the history row that row 0 and row 1 read as a tap: the store must come
  // after every read. Row 0 stores nothing.
  const auto hist_before = hist;
  float* store[2] = {nullptr, hist.data()};
  ShortConvParams p{rows, C,        w,          weight.data(),   z.data(),
                    taps, u.data(), out.data(), residual.data(), store};
  be.ShortConv(p);
  const float* taps_before[4] = {nullptr, hist_before.data(), hist_before.data(), z.data()};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) {
      double y = weight[c * w + 2] * z[r * C + c];
      for (int i = 0; i < 2; ++i)
        if (taps_before[r * 2 + i]) y += weight[c * w + i] * taps_before[r * 2 + i][c];
      const double want = u[r * C + c] + y / (1 + std::exp(-y));
      EXPECT_NEAR(out[r * C + c], want, 1e-5);
      EXPECT_NEAR(residual[r * C + c], residual_before[r * C + c] + want, 1e-5);
    }
  for (int c = 0; c < C; ++c) EXPECT_EQ(hist[c], z[C + c]);
}

TEST(CpuBackend, BranchOpsAndGatherRows) {
  std::mt19937 rng(7);
  CpuBackend be(1);
  const int rows = 3, D = 5;
  for (int M : {1, 4}) {
    auto x = Random(rows * D, rng), delta = Random(rows * D, rng);
    std::vector<float> h(rows * M * D, kPoison), mean(rows * D, kPoison);
    be.BroadcastBranches(x.data(), rows, M, D, h.data());
    for (int r = 0; r < rows; ++r)
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < D; ++j) ASSERT_EQ(h[(r * M + m) * D + j], x[r * D + j]);
    for (int m = 0; m < M; ++m) h[m * D] += static_cast<float>(m);  // branches now differ
    be.AddToBranches(delta.data(), rows, M, D, h.data());
    be.BranchMean(h.data(), rows, M, D, mean.data());
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < D; ++j) {
        double want = 0;
        for (int m = 0; m < M; ++m)
          want += double(x[r * D + j]) + (r == 0 && j == 0 ? m : 0) + delta[r * D + j];
        ASSERT_NEAR(mean[r * D + j], want / M, 1e-5) << "M=" << M;
      }
  }
  auto x = Random(rows * D, rng);
  const std::vector<int32_t> index = {2, 0, 2, 1};
  std::vector<float> out(index.size() * D, kPoison);
  be.GatherRows(x.data(), index.data(), 4, D, out.data());
  for (size_t i = 0; i < index.size(); ++i)
    for (int j = 0; j < D; ++j) ASSERT_EQ(out[i * D + j], x[index[i] * D + j]);
}

TEST(CpuBackend, MemoryIsHostMemoryAndResidentIsIdentity) {
  CpuBackend be(1);
  EXPECT_TRUE(be.host_memory());
  BackendBuffer b(&be, 1000);
  ASSERT_NE(b.get(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % 256, 0u);
  const std::vector<float> src = {1.f, 2.f, 3.f};
  std::vector<float> back(3);
  be.Upload(b.get(), src.data(), 12);
  be.Download(back.data(), b.get(), 12);
  EXPECT_EQ(back, src);
  const Matrix m{src.data(), DType::kF32, 1, 3};
  EXPECT_EQ(be.Resident(m).data, m.data);
  EXPECT_EQ(be.Resident(src.data(), 3), src.data());
}

}  // namespace
}  // namespace engram
