#include "server/engine/sampler.h"

#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace engram {
namespace {

std::vector<float> Logits() { return {0.1f, 2.0f, -1.0f, 1.9f, 0.5f, -3.0f}; }

int32_t SampleOnce(const SamplingParams& p, std::vector<float> logits, uint64_t fallback = 7) {
  Sampler s(p, {}, fallback);
  return s.Sample(logits);
}

TEST(Sampler, GreedyPicksArgmax) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(SampleOnce(p, Logits()), 1);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  SamplingParams p;
  p.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) EXPECT_EQ(SampleOnce(p, Logits(), seed), 1);
  SamplingParams q;
  q.top_p = 1e-6f;
  for (uint64_t seed = 0; seed < 20; ++seed) EXPECT_EQ(SampleOnce(q, Logits(), seed), 1);
}

TEST(Sampler, TopKTwoOnlyReturnsTheTwoBest) {
  SamplingParams p;
  p.top_k = 2;
  std::map<int32_t, int> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) ++seen[SampleOnce(p, Logits(), seed)];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[3], 0);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p;
  p.min_p = 0.5f;  // keeps tokens with prob >= half the best: ids 1 and 3 only
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const int32_t t = SampleOnce(p, Logits(), seed);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(Sampler, SeedMakesSamplingReproducible) {
  SamplingParams p;
  p.seed = 42;
  std::vector<int32_t> a, b;
  Sampler s1(p, {}, 1), s2(p, {}, 999);  // fallback seeds differ; the explicit seed wins
  for (int i = 0; i < 50; ++i) {
    auto l1 = Logits(), l2 = Logits();
    a.push_back(s1.Sample(l1));
    b.push_back(s2.Sample(l2));
  }
  EXPECT_EQ(a, b);
  std::map<int32_t, int> distinct;
  for (int32_t t : a) ++distinct[t];
  EXPECT_GT(distinct.size(), 1u);  // temperature 1 over these logits is not greedy
}

TEST(Sampler, PenaltiesDemoteSeenTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;  // token 1 (prompt) drops to 1.0 < 1.9
  const std::vector<int32_t> prompt = {1};
  Sampler s(p, prompt, 0);
  auto l = Logits();
  EXPECT_EQ(s.Sample(l), 3);

  SamplingParams f;
  f.temperature = 0;
  f.frequency_penalty = 0.2f;
  Sampler g(f, {}, 0);
  g.Accept(1);  // 2.0 - 0.2 = 1.8 < 1.9
  auto l2 = Logits();
  EXPECT_EQ(g.Sample(l2), 3);

  SamplingParams pr;
  pr.temperature = 0;
  pr.presence_penalty = 0.05f;
  Sampler h(pr, {}, 0);
  h.Accept(1);  // 1.95 > 1.9: still 1
  auto l3 = Logits();
  EXPECT_EQ(h.Sample(l3), 1);
}

}  // namespace
}  // namespace engram
