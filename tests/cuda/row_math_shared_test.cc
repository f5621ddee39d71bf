// The host+device math of row_math.h and sampling_math.h, checked on the CPU against naive
// double-precision references and against the engine's own Sampler and Rng. It needs no GPU and
// runs in every build: the CUDA kernels call these same functions, so this covers their math;
// the device tests (the other files here) then only have to cover indexing and reduction order.
//
// Tolerances: u = 2^-24 is float's unit roundoff. A float sum of n terms is within (n-1)·u·Σ|t|
// of the exact sum, whatever the order; a product or quotient adds u relative; a square root
// halves the relative error of its argument. Each bound below is built from those rules, so a
// failure means an error well outside float rounding, i.e. a wrong formula or index.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "engram/kernels/row_math.h"
#include "engram/kernels/sampling_math.h"
#include "gtest/gtest.h"
#include "server/engine/sampler.h"

namespace engram {
namespace {

constexpr double kU = 1.0 / (1 << 24);

std::vector<float> RandomNormal(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool SameFloat(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return FloatToBits(a) == FloatToBits(b);
}

// The reduction order of rms_norm.cu's block sum (256 threads striding the row, then a
// butterfly within each warp and across the 8 warps), replayed on the CPU.
float BlockTreeSumSq(const float* x, int n) {
  constexpr int kThreads = 256;
  float part[kThreads] = {};
  for (int t = 0; t < kThreads; ++t)
    for (int i = t; i < n; i += kThreads) part[t] += x[i] * x[i];
  auto butterfly = [](float* v, int width) {
    for (int o = width / 2; o > 0; o /= 2) {
      float next[32];
      for (int l = 0; l < width; ++l) next[l] = v[l] + v[l ^ o];
      std::copy(next, next + width, v);
    }
    return v[0];
  };
  float warps[32] = {};
  for (int w = 0; w < kThreads / 32; ++w) warps[w] = butterfly(part + w * 32, 32);
  return butterfly(warps, 32);
}

TEST(SharedRowMath, RmsNormInEitherReductionOrderIsWithinTheFloatBound) {
  std::mt19937 rng(11);
  for (int n : {1, 7, 96, 4096, 5003}) {
    const auto x = RandomNormal(n, rng, 3.0f), w = RandomNormal(n, rng);
    const float eps = 1e-5f;
    std::vector<float> cpu(n);
    RmsNormRow(x.data(), w.data(), n, eps, cpu.data());
    const float inv_tree = RmsInvScaleFromSumSq(BlockTreeSumSq(x.data(), n), n, eps);
    double ss = 0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    // Sum of n positive terms: (n-1)u; mean, add eps, sqrt (halves it), divide: 3u more, then two
    // products: 2u. Per value: (n/2 + 6)u relative to the exact value.
    const double rel = (n / 2.0 + 6) * kU;
    for (int i = 0; i < n; ++i) {
      const double exact = x[i] * inv * w[i];
      ASSERT_NEAR(cpu[i], exact, rel * std::fabs(exact) + 1e-30) << "n=" << n << " i=" << i;
      ASSERT_NEAR(RmsNormValue(x[i], inv_tree, w[i]), exact, rel * std::fabs(exact) + 1e-30)
          << "block order, n=" << n << " i=" << i;
    }
  }
}

TEST(SharedRowMath, RopePairRotatesLikeRopeHeadAndTheDoubleReference) {
  std::mt19937 rng(12);
  const int dim = 128, half = dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * i / dim));
  for (int64_t pos : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{4095}, int64_t{131071}}) {
    const auto x = RandomNormal(dim, rng);
    std::vector<float> head = x, pairs = x;
    RopeHead(head.data(), dim, pos, inv_freq.data());
    for (int i = 0; i < half; ++i) RopePair(&pairs[i], &pairs[i + half], pos, inv_freq[i]);
    for (int i = 0; i < dim; ++i) ASSERT_TRUE(SameFloat(head[i], pairs[i])) << i;
    for (int i = 0; i < half; ++i) {
      // The angle is rounded to float identically on both backends; compare with the exact
      // rotation by that float angle. cosf/sinf within 1 ulp (2^-23 absolute near 1), two
      // products and a sum: |error| <= 2^-21 (|a| + |b|).
      const double angle = static_cast<float>(pos) * inv_freq[i];
      const double a = x[i], b = x[i + half];
      const double lo = a * std::cos(angle) - b * std::sin(angle);
      const double hi = b * std::cos(angle) + a * std::sin(angle);
      const double tol = std::ldexp(std::fabs(a) + std::fabs(b), -21);
      ASSERT_NEAR(head[i], lo, tol) << "pos " << pos << " pair " << i;
      ASSERT_NEAR(head[i + half], hi, tol) << "pos " << pos << " pair " << i;
    }
  }
}

TEST(SharedRowMath, DequantValueEqualsDequantRowForEveryDtype) {
  std::mt19937 rng(13);
  const int d = 96;  // three fp8 scale blocks
  std::uniform_int_distribution<int> byte(0, 255);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3}) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<uint8_t> row(d * 4 + d / kFp8BlockSize);
      for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
      const uint8_t* scales = row.data() + d;  // fp8: scales follow the d value bytes
      std::vector<float> whole(d);
      DequantRow(row.data(), scales, t, d, whole.data());
      for (int i = 0; i < d; ++i)
        ASSERT_TRUE(SameFloat(DequantValue(row.data(), scales, t, i), whole[i]))
            << DTypeToConfig(t) << " value " << i;
    }
  }
}

TEST(SharedRowMath, OnlineSoftmaxInChunksMatchesTwoPassSoftmax) {
  std::mt19937 rng(14);
  for (int n : {1, 2, 17, 300}) {
    auto scores = RandomNormal(n, rng, 4.0f);
    const auto values = RandomNormal(n, rng);
    if (n > 2) scores[1] = -INFINITY;  // a masked score weighs nothing
    // Four partial states over interleaved positions (as the warps of an attention block take
    // them), merged in order; an extra empty state must change nothing.
    SoftmaxState parts[5];
    float acc[5] = {};
    for (auto& p : parts) p = SoftmaxEmpty();
    for (int i = 0; i < n; ++i) {
      float w;
      const float c = SoftmaxPush(&parts[i % 4], scores[i], &w);
      acc[i % 4] = acc[i % 4] * c + w * values[i];
    }
    SoftmaxState total = SoftmaxEmpty();
    float out = 0.f;
    for (int k = 0; k < 5; ++k) {
      float sa, sb;
      SoftmaxMerge(&total, parts[k], &sa, &sb);
      out = out * sa + acc[k] * sb;
    }
    double mx = -INFINITY, sum = 0, ref = 0, vmax = 0;
    for (float s : scores) mx = std::max<double>(mx, s);
    for (int i = 0; i < n; ++i) {
      const double w = std::exp(scores[i] - mx);
      sum += w;
      ref += w * values[i];
      vmax = std::max<double>(vmax, std::fabs(values[i]));
    }
    ref /= sum;
    // Each weight: one exp (1 ulp) and at most n rescales (1 ulp each plus a product); the
    // weighted sum adds n roundings: (4n + 8)u of max|v| bounds it with room.
    ASSERT_NEAR(out / total.sum, ref, (4.0 * n + 8) * kU * vmax) << "n=" << n;
    ASSERT_NEAR(total.sum, sum, (4.0 * n + 8) * kU * sum) << "n=" << n;
  }
  SoftmaxState empty = SoftmaxEmpty();
  float sa = -1, sb = -1;
  SoftmaxMerge(&empty, SoftmaxEmpty(), &sa, &sb);
  EXPECT_EQ(sa, 0.f);
  EXPECT_EQ(sb, 0.f);
  EXPECT_EQ(empty.sum, 0.f);
}

TEST(SharedRowMath, EngramGateFromDotFollowsTheReferenceFormula) {
  for (int hidden : {64, 1024}) {
    for (double dot : {-300.0, -2.5, -1e-9, 0.0, 1e-9, 0.3, 7.0, 1000.0}) {
      const double s = dot / std::sqrt(static_cast<double>(hidden));
      const double mag = std::sqrt(std::max(std::fabs(s), 1e-6));
      const double alpha = 1.0 / (1.0 + std::exp(-(s > 0 ? mag : (s < 0 ? -mag : 0.0))));
      EXPECT_NEAR(EngramGateFromDot(static_cast<float>(dot), hidden), alpha, 8 * kU)
          << "dot " << dot << " hidden " << hidden;
    }
  }
}

// The engine's Rng, engram-model's generator and the client's workload generator all run on these
// functions, so they are checked against known answers: splitmix64's published first output for
// state 0, and xoshiro256** draws computed by an independent Python transcription of the
// reference C code (Blackman & Vigna).
TEST(SharedSamplingMath, XoshiroMatchesKnownAnswers) {
  uint64_t x = 0;
  EXPECT_EQ(SplitMix64Next(&x), 0xe220a8397b1dcdafull);
  const struct {
    uint64_t seed;
    uint64_t draws[4];
  } cases[] = {
      {0,
       {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
        0x6aa594f1262d2d2cull}},
      {1,
       {0xb3f2af6d0fc710c5ull, 0x853b559647364ceaull, 0x92f89756082a4514ull,
        0x642e1c7bc266a3a7ull}},
      {0x5eed,
       {0xef33f17055244b74ull, 0xe1f591112fb5051bull, 0xd8ab05640214863aull,
        0xf985e1f2fb897b03ull}},
  };
  for (const auto& c : cases) {
    Xoshiro256 st = XoshiroSeed(c.seed);
    Rng engine(c.seed);
    for (uint64_t want : c.draws) {
      EXPECT_EQ(XoshiroNext(&st), want) << "seed " << c.seed;
      EXPECT_EQ(engine.Next(), want) << "seed " << c.seed;
    }
    Xoshiro256 u = XoshiroSeed(c.seed);  // the top 53 bits of the first draw
    EXPECT_EQ(XoshiroUniform(&u), static_cast<double>(c.draws[0] >> 11) * 0x1.0p-53);
  }
}

TEST(SharedSamplingMath, PenaltiesMatchTheEngineSamplerBitForBit) {
  std::mt19937 rng(15);
  const int vocab = 500;
  SamplingParams p;
  p.temperature = 0.0f;  // greedy: Sample only applies the penalties to the logits
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.7f;
  p.frequency_penalty = 0.37f;
  const std::vector<int32_t> prompt = {3, 9, 9, 27, 81, 243};
  const std::vector<int32_t> output = {9, 10, 10, 10, 499, 0};
  Sampler sampler(p, prompt, 1);
  for (int32_t t : output) sampler.Accept(t);
  auto logits = RandomNormal(vocab, rng, 3.0f);
  logits[9] = 0.0f;
  logits[10] = -0.0f;
  std::vector<float> engine = logits;
  sampler.Sample(std::span<float>(engine));

  std::vector<int32_t> seen = prompt;
  seen.insert(seen.end(), output.begin(), output.end());
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  std::vector<float> shared = logits;
  for (int32_t t : seen) shared[t] = RepetitionPenalized(shared[t], p.repetition_penalty);
  for (int32_t t : {9, 10, 499, 0}) {
    const int count = static_cast<int>(std::count(output.begin(), output.end(), t));
    shared[t] =
        PresenceFrequencyPenalized(shared[t], p.presence_penalty, p.frequency_penalty, count);
  }
  for (int i = 0; i < vocab; ++i) ASSERT_TRUE(SameFloat(shared[i], engine[i])) << "token " << i;
}

TEST(SharedSamplingMath, DescendingLogitKeyOrdersLikeTheSampler) {
  std::mt19937 rng(16);
  auto logits = RandomNormal(2000, rng, 5.0f);
  // Ties, both zeros, infinities and denormals: the sampler's comparator treats -0 == +0.
  for (int i = 0; i < 200; ++i) logits[rng() % logits.size()] = logits[rng() % logits.size()];
  logits[5] = 0.0f;
  logits[6] = -0.0f;
  logits[7] = 0.0f;
  logits[8] = INFINITY;
  logits[9] = -INFINITY;
  logits[10] = 1e-40f;
  logits[11] = -1e-40f;
  std::vector<int32_t> by_sampler(logits.size()), by_key(logits.size());
  std::iota(by_sampler.begin(), by_sampler.end(), 0);
  std::iota(by_key.begin(), by_key.end(), 0);
  std::sort(by_sampler.begin(), by_sampler.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::stable_sort(by_key.begin(), by_key.end(), [&](int32_t a, int32_t b) {
    return DescendingLogitKey(logits[a]) < DescendingLogitKey(logits[b]);
  });
  EXPECT_EQ(by_key, by_sampler);
}

TEST(SharedSamplingMath, CorrectlyRoundedExpRarelyDiffersFromTheLibraryExpf) {
  // The device computes candidate weights as float(exp(double)); the engine calls expf. The
  // sampling comment claims they differ rarely and by at most one ulp: measure it.
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> arg(-80.f, 0.f);
  const int n = 200000;
  int differ = 0;
  for (int i = 0; i < n; ++i) {
    const float x = arg(rng);
    const float lib = CandidateWeight(x, 0.f, 1.f);
    const float rounded = static_cast<float>(std::exp(static_cast<double>(x)));
    if (lib != rounded) {
      ++differ;
      const int64_t ulps = static_cast<int64_t>(FloatToBits(lib)) - FloatToBits(rounded);
      ASSERT_LE(std::llabs(ulps), 1) << "x = " << x;
    }
  }
  EXPECT_LE(differ, n / 100) << differ << " of " << n << " weights differ by one ulp";
}

}  // namespace
}  // namespace engram
