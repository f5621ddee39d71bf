// The Engram gate + conv-norm kernel and the short-conv kernel against the CPU backend's
// EngramGate (with its fused conv-input RMSNorm, eps 1e-5) and ShortConv, on a step of two
// sequences: one starting at time 0 (taps before it are zero) and one continuing at time 10 (taps
// reach into its conv history), M = 2 branches, D = 96, kernel 4, dilation 3 — the tap pointers are
// built exactly as server/model/engram_layer.cc builds them, pointing into device memory for the
// GPU.
//
// Tolerances, with u = 2^-24, built per value from the float error rules (a float sum of n
// terms is within (n-1)u sum|t| of exact; an RMSNorm value within (D/2 + 6)u relative):
//  - dot of the two normalised vectors: E = (2D + 12)u sum_i |qn_i kn_i|; s = dot/sqrt(D) is off
//    by ds = E/sqrt(D) + u|s|;
//  - alpha = sigmoid(+-sqrt(|s|)): sigmoid' <= 1/4 and sqrt' = 1/(2 sqrt), so |d alpha| <=
//    ds / (8 sqrt(max(|s| - ds, 1e-6))) + 4u; when |s| <= ds the sign may flip and the bound is
//    the whole jump 0.5 sqrt(2 ds + 1e-6);
//  - u = alpha v: |d alpha| |v| + u|u|; z = RMSNorm(u): alpha cancels but for eps, so
//    (D + 14)u |z| + eps / (alpha^2 mean(v^2) + eps) |d alpha| / alpha |z|;
//  - y = u + SiLU(sum_i W_i z_i): w u sum|W z| + sum |W_i| dz_i through SiLU' <= 1.1, plus 8u
//    for SiLU's exp and division, plus du;
// every bound doubled because both sides sit within it of the exact value.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engram/kernels/row_math.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::testing::DeviceBuffer;
using cuda::testing::kU;
using cuda::testing::RandomNormal;
using cuda::testing::Stream;

TEST(CudaEngram, GateNormAndShortConvMatchCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(7);
  const int D = 96, M = 2, kw = 4, N = 3;
  const int C = M * D;
  // Two sequences: (first time, rows).
  const std::vector<std::pair<int64_t, int>> seqs = {{0, 4}, {10, 3}};
  std::vector<int32_t> row_begin{0};
  for (const auto& s : seqs) row_begin.push_back(row_begin.back() + s.second);
  const int64_t T = row_begin.back();
  const int hist_rows = (kw - 1) * N;

  const auto h = RandomNormal(T * C, rng, 2.0f);
  const auto keys = RandomNormal(static_cast<size_t>(M) * T * D, rng, 3.0f);
  const auto value = RandomNormal(T * D, rng);
  const auto key_norm = RandomNormal(static_cast<size_t>(M) * D, rng);
  const auto query_norm = RandomNormal(static_cast<size_t>(M) * D, rng);
  const auto conv_norm = RandomNormal(static_cast<size_t>(M) * D, rng);
  const auto conv_w = RandomNormal(static_cast<size_t>(C) * kw, rng, 0.5f);
  const auto history = RandomNormal(static_cast<size_t>(hist_rows) * C, rng);  // sequence 1

  // CPU reference.
  CpuBackend cpu(2);
  std::vector<float> gates(T * M), gated(T * C), z(T * C), y(T * C);
  EngramGateParams gp;
  gp.rows = T;
  gp.hidden = D;
  gp.branches = M;
  gp.hidden_in = h.data();
  gp.keys = keys.data();
  gp.value = value.data();
  gp.key_norm = key_norm.data();
  gp.query_norm = query_norm.data();
  gp.gates = gates.data();
  gp.gated = gated.data();
  gp.conv_norm = conv_norm.data();
  gp.z = z.data();
  cpu.EngramGate(gp);

  // Device buffers first: the GPU's tap table points into them.
  Stream stream;
  DeviceBuffer<float> dh(h), dkeys(keys), dvalue(value), dkn(key_norm), dqn(query_norm),
      dcn(conv_norm), dw(conv_w), dhist(history);
  DeviceBuffer<float> dgates(T * M), dgated(T * C), dz(T * C), dy(T * C);

  // Taps as engram_layer.cc builds them; tap_src records (row of z, or -1 - history row).
  std::vector<const float*> taps(T * (kw - 1), nullptr), dtaps_host(T * (kw - 1), nullptr);
  std::vector<int64_t> tap_src(T * (kw - 1), INT64_MIN);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t t0 = seqs[s].first;
    const int64_t hist = s == 1 ? hist_rows : 0;
    for (int32_t r = row_begin[s]; r < row_begin[s + 1]; ++r) {
      const int64_t t = t0 + (r - row_begin[s]);
      for (int i = 0; i < kw - 1; ++i) {
        const int64_t tau = t - static_cast<int64_t>(kw - 1 - i) * N;
        const int64_t at = r * (kw - 1) + i;
        if (tau >= t0) {
          const int64_t zr = row_begin[s] + (tau - t0);
          taps[at] = z.data() + zr * C;
          dtaps_host[at] = dz.get() + zr * C;
          tap_src[at] = zr;
        } else if (tau >= 0) {
          const int64_t idx = tau - (t0 - hist);
          ASSERT_GE(idx, 0);
          taps[at] = history.data() + idx * C;
          dtaps_host[at] = dhist.get() + idx * C;
          tap_src[at] = -1 - idx;
        }
      }
    }
  }
  ShortConvParams cp;
  cp.rows = T;
  cp.channels = C;
  cp.kernel = kw;
  cp.weight = conv_w.data();
  cp.z = z.data();
  cp.taps = taps.data();
  cp.gated = gated.data();
  cp.out = y.data();
  cpu.ShortConv(cp);
  std::vector<float> h_out = h;
  for (int64_t i = 0; i < T * C; ++i) h_out[i] += y[i];

  // GPU.
  cuda::EngramGateParams g;
  g.rows = T;
  g.hidden = D;
  g.branches = M;
  g.hidden_in = dh.get();
  g.keys = dkeys.get();
  g.value = dvalue.get();
  g.key_norm = dkn.get();
  g.query_norm = dqn.get();
  g.conv_norm = dcn.get();
  g.conv_eps = 1e-5f;
  g.gates = dgates.get();
  g.gated = dgated.get();
  g.z = dz.get();
  cuda::EngramGate(g, stream.get());
  std::vector<const float*> dtaps_vec(dtaps_host.begin(), dtaps_host.end());
  DeviceBuffer<const float*> dtaps(dtaps_vec);
  cuda::ShortConvParams c;
  c.rows = T;
  c.channels = C;
  c.kernel = kw;
  c.weight = dw.get();
  c.z = dz.get();
  c.taps = dtaps.get();
  c.gated = dgated.get();
  c.out = dy.get();
  c.residual = dh.get();
  cuda::ShortConv(c, stream.get());
  const auto got_gates = dgates.Download(), got_gated = dgated.Download(), got_z = dz.Download(),
             got_y = dy.Download(), got_h = dh.Download();

  // Bounds per (row, branch), then per value.
  std::vector<double> d_alpha(T * M), dz_bound(T * C), du_bound(T * C);
  for (int64_t r = 0; r < T; ++r)
    for (int m = 0; m < M; ++m) {
      const float* hr = h.data() + (r * M + m) * D;
      const float* kr = keys.data() + (m * T + r) * D;
      double sq = 0, sk = 0, sv = 0;
      for (int i = 0; i < D; ++i) {
        sq += double(hr[i]) * hr[i];
        sk += double(kr[i]) * kr[i];
        sv += double(value[r * D + i]) * value[r * D + i];
      }
      const double iq = 1 / std::sqrt(sq / D + kFloat32Eps),
                   ik = 1 / std::sqrt(sk / D + kFloat32Eps);
      double dot = 0, mag = 0;
      for (int i = 0; i < D; ++i) {
        const double t = hr[i] * iq * query_norm[m * D + i] * kr[i] * ik * key_norm[m * D + i];
        dot += t;
        mag += std::fabs(t);
      }
      const double s = dot / std::sqrt(double(D));
      const double ds = (2.0 * D + 12) * kU * mag / std::sqrt(double(D)) + kU * std::fabs(s);
      const double da = std::fabs(s) > ds
                            ? ds / (8 * std::sqrt(std::max(std::fabs(s) - ds, 1e-6))) + 4 * kU
                            : 0.5 * std::sqrt(2 * ds + 1e-6);
      d_alpha[r * M + m] = 2 * da;
      const double alpha = gates[r * M + m];
      const double eps_term = 1e-5 / (alpha * alpha * sv / D + 1e-5) * da / alpha;
      for (int i = 0; i < D; ++i) {
        const int64_t at = (r * M + m) * D + i;
        du_bound[at] = 2 * (da * std::fabs(value[r * D + i]) + kU * std::fabs(gated[at]));
        dz_bound[at] = 2 * ((D + 14) * kU + eps_term) * std::fabs(z[at]) + 1e-30;
      }
    }

  for (int64_t i = 0; i < T * M; ++i)
    ASSERT_NEAR(got_gates[i], gates[i], d_alpha[i])
        << "gate of row " << i / M << " branch " << i % M;
  for (int64_t i = 0; i < T * C; ++i) {
    ASSERT_NEAR(got_gated[i], gated[i], du_bound[i] + 1e-30) << "u value " << i;
    ASSERT_NEAR(got_z[i], z[i], dz_bound[i]) << "z value " << i;
  }
  for (int64_t r = 0; r < T; ++r)
    for (int ch = 0; ch < C; ++ch) {
      const int64_t at = r * C + ch;
      const float* wc = conv_w.data() + ch * kw;
      double conv_mag = std::fabs(wc[kw - 1] * z[at]),
             dz_sum = std::fabs(wc[kw - 1]) * dz_bound[at];
      for (int i = 0; i < kw - 1; ++i) {
        const int64_t src = tap_src[r * (kw - 1) + i];
        if (src == INT64_MIN) continue;
        const float zv = src >= 0 ? z[src * C + ch] : history[(-1 - src) * C + ch];
        conv_mag += std::fabs(wc[i] * zv);
        if (src >= 0) dz_sum += std::fabs(wc[i]) * dz_bound[src * C + ch];
      }
      const double silu = std::fabs(y[at] - gated[at]);
      const double tol = du_bound[at] + 1.1 * (2 * kw * kU * conv_mag + dz_sum) +
                         2 * 8 * kU * silu + 2 * kU * std::fabs(y[at]) + 1e-30;
      ASSERT_NEAR(got_y[at], y[at], tol) << "conv out row " << r << " channel " << ch;
      ASSERT_NEAR(got_h[at], h_out[at], tol + 2 * kU * std::fabs(h_out[at]))
          << "residual row " << r << " channel " << ch;
    }
}

}  // namespace
}  // namespace engram
