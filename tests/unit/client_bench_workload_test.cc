// engram-client bench's workload: prompt and output lengths, token ids, the JSONL reader and
// the Poisson / gamma arrival process, all deterministic for a seed.
#include "client/bench_workload.h"

#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace engram::client {
namespace {

TEST(ClientBenchWorkload, RandomPromptsStayInRangeAndCoverIt) {
  const auto prompts = RandomPrompts(2000, {100, 1024}, {5, 9}, 1000, 42);
  ASSERT_EQ(prompts.size(), 2000u);
  std::set<uint32_t> outs;
  uint32_t min_len = UINT32_MAX, max_len = 0;
  for (const auto& p : prompts) {
    EXPECT_EQ(p.kind, BenchPrompt::Kind::kTokenIds);
    EXPECT_EQ(p.prompt_len, p.token_ids.size());
    EXPECT_GE(p.prompt_len, 100u);
    EXPECT_LE(p.prompt_len, 1024u);
    min_len = std::min(min_len, p.prompt_len);
    max_len = std::max(max_len, p.prompt_len);
    for (uint32_t id : p.token_ids) ASSERT_LT(id, 1000u);
    EXPECT_GE(p.max_tokens, 5u);
    EXPECT_LE(p.max_tokens, 9u);
    outs.insert(p.max_tokens);
  }
  // Uniform over the closed range: both ends are drawn.
  EXPECT_EQ(outs, (std::set<uint32_t>{5, 6, 7, 8, 9}));
  EXPECT_LT(min_len, 110u);
  EXPECT_GT(max_len, 1014u);
}

TEST(ClientBenchWorkload, FixedLengths) {
  for (const auto& p : RandomPrompts(50, {7, 7}, {3, 3}, 50, 1)) {
    EXPECT_EQ(p.token_ids.size(), 7u);
    EXPECT_EQ(p.max_tokens, 3u);
  }
}

TEST(ClientBenchWorkload, DeterministicForASeed) {
  const auto a = RandomPrompts(20, {1, 64}, {1, 64}, 32000, 7);
  const auto b = RandomPrompts(20, {1, 64}, {1, 64}, 32000, 7);
  const auto c = RandomPrompts(20, {1, 64}, {1, 64}, 32000, 8);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token_ids, b[i].token_ids);
    EXPECT_EQ(a[i].max_tokens, b[i].max_tokens);
    differs |= a[i].token_ids != c[i].token_ids;
  }
  EXPECT_TRUE(differs);
}

TEST(ClientBenchWorkload, OutputLengthsDoNotMoveThePrompts) {
  const auto a = RandomPrompts(20, {1, 64}, {1, 10}, 32000, 3);
  const auto b = RandomPrompts(20, {1, 64}, {100, 1024}, 32000, 3);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].token_ids, b[i].token_ids);
}

TEST(ClientBenchWorkload, StreamsDiffer) {
  EXPECT_NE(DeriveSeed(0, kStreamMeasured), DeriveSeed(0, kStreamWarmup));
  EXPECT_NE(DeriveSeed(0, kStreamMeasured), DeriveSeed(1, kStreamMeasured));
  EXPECT_EQ(DeriveSeed(5, kStreamArrivals), DeriveSeed(5, kStreamArrivals));
}

double Mean(const std::vector<double>& x) {
  return std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
}

std::vector<double> Gaps(const std::vector<double>& arrivals) {
  std::vector<double> gaps;
  for (size_t i = 1; i < arrivals.size(); ++i) gaps.push_back(arrivals[i] - arrivals[i - 1]);
  return gaps;
}

TEST(ClientBenchWorkload, PoissonArrivalsHaveMeanGapOneOverRate) {
  const auto t = ArrivalTimes(50001, 10.0, 1.0, 123);
  EXPECT_EQ(t.front(), 0.0);
  for (size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
  const auto gaps = Gaps(t);
  const double mean = Mean(gaps);
  EXPECT_NEAR(mean, 0.1, 0.1 * 0.02);
  // Exponential: standard deviation equal to the mean.
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= static_cast<double>(gaps.size());
  EXPECT_NEAR(std::sqrt(var), 0.1, 0.1 * 0.03);
}

TEST(ClientBenchWorkload, GammaArrivalsKeepTheRateAndScaleTheVariance) {
  // Gamma(shape b, scale 1 / (rate b)): mean 1 / rate, squared coefficient of variation 1 / b.
  for (double burstiness : {0.25, 0.5, 2.0, 8.0}) {
    const auto gaps = Gaps(ArrivalTimes(80001, 4.0, burstiness, 9));
    const double mean = Mean(gaps);
    EXPECT_NEAR(mean, 0.25, 0.25 * 0.03) << "burstiness " << burstiness;
    double var = 0;
    for (double g : gaps) var += (g - mean) * (g - mean);
    var /= static_cast<double>(gaps.size());
    EXPECT_NEAR(var / (mean * mean), 1.0 / burstiness, 0.08 / burstiness)
        << "burstiness " << burstiness;
  }
}

TEST(ClientBenchWorkload, ArrivalsDeterministicAndInfiniteRateIsAllAtOnce) {
  EXPECT_EQ(ArrivalTimes(100, 3.0, 0.7, 5), ArrivalTimes(100, 3.0, 0.7, 5));
  EXPECT_NE(ArrivalTimes(100, 3.0, 0.7, 5), ArrivalTimes(100, 3.0, 0.7, 6));
  const auto inf = ArrivalTimes(10, std::numeric_limits<double>::infinity(), 1.0, 5);
  EXPECT_EQ(inf, std::vector<double>(10, 0.0));
  EXPECT_TRUE(ArrivalTimes(0, 1.0, 1.0, 5).empty());
}

TEST(ClientBenchWorkload, JsonlDataset) {
  const std::string text =
      "{\"prompt\": \"Hello\"}\n"
      "\n"
      "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
      " {\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 12}\n";
  auto entries = ParseJsonlDataset(text, "d.jsonl");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].kind, BenchPrompt::Kind::kText);
  EXPECT_EQ((*entries)[0].text, "Hello");
  EXPECT_EQ((*entries)[0].max_tokens, 0u);
  EXPECT_EQ((*entries)[1].kind, BenchPrompt::Kind::kMessages);
  ASSERT_EQ((*entries)[1].messages.size(), 2u);
  EXPECT_EQ((*entries)[1].messages[1].second, "Hi");
  EXPECT_EQ((*entries)[1].max_tokens, 12u);

  // Five prompts from two lines: each line used, per-line max_tokens kept, the rest drawn.
  const auto prompts = DatasetPrompts(*entries, 5, {20, 30}, 1);
  ASSERT_EQ(prompts.size(), 5u);
  size_t texts = 0;
  for (const auto& p : prompts) {
    if (p.kind == BenchPrompt::Kind::kText) {
      ++texts;
      EXPECT_GE(p.max_tokens, 20u);
      EXPECT_LE(p.max_tokens, 30u);
    } else {
      EXPECT_EQ(p.max_tokens, 12u);
    }
  }
  EXPECT_GE(texts, 2u);
  EXPECT_LE(texts, 3u);
  const auto again = DatasetPrompts(*entries, 5, {20, 30}, 1);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(prompts[i].kind, again[i].kind);
    EXPECT_EQ(prompts[i].max_tokens, again[i].max_tokens);
  }
}

TEST(ClientBenchWorkload, JsonlErrorsNameTheLine) {
  auto bad = ParseJsonlDataset("{\"prompt\": \"a\"}\n{\"prompt\": 3}\n", "d.jsonl");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("d.jsonl:2:"), absl::string_view::npos) << bad.status();
  EXPECT_FALSE(ParseJsonlDataset("not json\n", "x").ok());
  EXPECT_FALSE(ParseJsonlDataset("{\"text\": \"a\"}\n", "x").ok());
  EXPECT_FALSE(ParseJsonlDataset("{\"prompt\": \"a\", \"max_tokens\": 0}\n", "x").ok());
  EXPECT_FALSE(ParseJsonlDataset("\n\n", "x").ok());
  EXPECT_FALSE(LoadJsonlDataset("/nonexistent/prompts.jsonl").ok());
}

TEST(ClientBenchWorkload, RngBetweenIsInclusiveAndGammaPositive) {
  BenchRng rng(1);
  std::set<int64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(rng.Between(-2, 2));
  EXPECT_EQ(seen, (std::set<int64_t>{-2, -1, 0, 1, 2}));
  for (int i = 0; i < 1000; ++i) ASSERT_GT(rng.Gamma(0.3, 1.0), 0.0);
}

}  // namespace
}  // namespace engram::client
