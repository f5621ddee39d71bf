// engram-client bench's metric math against hand-computed values and numpy's percentiles.
#include "client/bench_metrics.h"

#include <vector>

#include "gtest/gtest.h"

namespace engram::client {
namespace {

// Expected values from numpy 1.24: np.percentile(x, [50, 90, 99]) (method 'linear').
TEST(ClientBenchMetrics, PercentileMatchesNumpyLinear) {
  const std::vector<double> a = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(a, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(a, 90), 3.7);
  EXPECT_DOUBLE_EQ(Percentile(a, 99), 3.97);
  const std::vector<double> b = {15, 20, 35, 40, 50};
  EXPECT_DOUBLE_EQ(Percentile(b, 50), 35);
  EXPECT_DOUBLE_EQ(Percentile(b, 90), 46);
  EXPECT_DOUBLE_EQ(Percentile(b, 99), 49.6);
  EXPECT_DOUBLE_EQ(Percentile(b, 0), 15);
  EXPECT_DOUBLE_EQ(Percentile(b, 100), 50);
  EXPECT_DOUBLE_EQ(Percentile({3.0}, 99), 3.0);
}

TEST(ClientBenchMetrics, SummarizeSortsAndUsesPopulationStd) {
  // np.percentile([7,1,4,9,2,8], [50,90,99]) = [5.5, 8.5, 8.95]; np.std([1,2,3,4]) = 1.1180...
  LatencySummary s = Summarize({7, 1, 4, 9, 2, 8});
  EXPECT_EQ(s.count, 6u);
  EXPECT_DOUBLE_EQ(s.mean, 31.0 / 6);
  EXPECT_DOUBLE_EQ(s.median, 5.5);
  EXPECT_DOUBLE_EQ(s.p90, 8.5);
  EXPECT_NEAR(s.p99, 8.95, 1e-12);
  EXPECT_NEAR(Summarize({1, 2, 3, 4}).std, 1.118033988749895, 1e-12);
  // Empty: zeros, as vLLM's np.mean(x or 0).
  LatencySummary e = Summarize({});
  EXPECT_EQ(e.count, 0u);
  EXPECT_EQ(e.mean, 0);
  EXPECT_EQ(e.p99, 0);
}

RequestRecord Ok(double send, std::vector<RequestRecord::Chunk> chunks, double end, uint32_t prompt,
                 uint32_t output) {
  RequestRecord r;
  r.ok = true;
  r.code = "OK";
  r.send_s = send;
  r.chunks = std::move(chunks);
  r.end_s = end;
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  return r;
}

RequestRecord Failed(double send, double end, std::string code) {
  RequestRecord r;
  r.code = std::move(code);
  r.message = "queue full";
  r.send_s = send;
  r.end_s = end;
  return r;
}

// A: 4 tokens in three messages; B: one token, then a final message without tokens;
// C, D: RESOURCE_EXHAUSTED; E: UNAVAILABLE.
std::vector<RequestRecord> Records() {
  return {Ok(0.0, {{0.10, 1}, {0.15, 1}, {0.25, 2}}, 0.25, 10, 4),
          Ok(0.05, {{0.35, 1}}, 0.40, 20, 1), Failed(0.06, 0.07, "RESOURCE_EXHAUSTED"),
          Failed(0.30, 0.31, "RESOURCE_EXHAUSTED"), Failed(0.45, 0.46, "UNAVAILABLE")};
}

TEST(ClientBenchMetrics, HandComputedRun) {
  const BenchMetrics m = ComputeMetrics(Records(), 0.5, SloConfig{});
  EXPECT_EQ(m.completed, 2u);
  EXPECT_EQ(m.failed, 3u);
  EXPECT_EQ(m.failed_by_code.at("RESOURCE_EXHAUSTED"), 2u);
  EXPECT_EQ(m.failed_by_code.at("UNAVAILABLE"), 1u);
  EXPECT_EQ(m.error_examples.at("UNAVAILABLE"), "queue full");
  EXPECT_EQ(m.total_input_tokens, 30u);  // failures contribute nothing
  EXPECT_EQ(m.total_output_tokens, 5u);
  EXPECT_DOUBLE_EQ(m.request_throughput, 4.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 10.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 70.0);

  // TTFT: A 0.10, B 0.35 - 0.05 = 0.30.
  EXPECT_EQ(m.ttft.count, 2u);
  EXPECT_NEAR(m.ttft.mean, 0.2, 1e-12);
  EXPECT_NEAR(m.ttft.median, 0.2, 1e-12);
  EXPECT_NEAR(m.ttft.p90, 0.28, 1e-12);
  EXPECT_NEAR(m.ttft.p99, 0.298, 1e-12);
  EXPECT_NEAR(m.ttft.std, 0.1, 1e-12);
  // TPOT: only A (B has one token): (0.25 - 0.10) / (4 - 1).
  EXPECT_EQ(m.tpot.count, 1u);
  EXPECT_NEAR(m.tpot.mean, 0.05, 1e-12);
  EXPECT_NEAR(m.tpot.p99, 0.05, 1e-12);
  // ITL: A's gaps between messages with tokens (0.05, 0.10), pooled; B has none.
  EXPECT_EQ(m.itl.count, 2u);
  EXPECT_NEAR(m.itl.mean, 0.075, 1e-12);
  EXPECT_NEAR(m.itl.p90, 0.095, 1e-12);
  // E2E: A 0.25, B 0.40 - 0.05 = 0.35 (the final message without tokens counts).
  EXPECT_EQ(m.e2el.count, 2u);
  EXPECT_NEAR(m.e2el.mean, 0.30, 1e-12);
  EXPECT_NEAR(m.e2el.p99, 0.349, 1e-12);

  EXPECT_FALSE(m.has_goodput);
  EXPECT_EQ(m.request_goodput, 0);
  // A, B and C overlap at t = 0.06.
  EXPECT_EQ(m.peak_concurrency, 3u);
  // Every token arrived within the first second after the first send.
  EXPECT_DOUBLE_EQ(m.peak_output_throughput, 5.0);
}

TEST(ClientBenchMetrics, Goodput) {
  SloConfig ttft_only;
  ttft_only.ttft_ms = 150;  // A (100 ms) meets it, B (300 ms) does not
  BenchMetrics m = ComputeMetrics(Records(), 0.5, ttft_only);
  EXPECT_TRUE(m.has_goodput);
  EXPECT_EQ(m.good_completed, 1u);
  EXPECT_DOUBLE_EQ(m.request_goodput, 2.0);

  SloConfig tpot_only;
  tpot_only.tpot_ms = 10;  // A's TPOT is 50 ms; B's single token counts as TPOT 0 (vLLM)
  m = ComputeMetrics(Records(), 0.5, tpot_only);
  EXPECT_EQ(m.good_completed, 1u);

  SloConfig both;
  both.ttft_ms = 400;
  both.tpot_ms = 60;
  m = ComputeMetrics(Records(), 0.5, both);
  EXPECT_EQ(m.good_completed, 2u);
  EXPECT_DOUBLE_EQ(m.request_goodput, 4.0);

  SloConfig e2el;
  e2el.e2el_ms = 300;  // A 250 ms yes, B 350 ms no
  m = ComputeMetrics(Records(), 0.5, e2el);
  EXPECT_EQ(m.good_completed, 1u);

  // At the boundary the request is good (vLLM: slo >= value).
  SloConfig exact;
  exact.ttft_ms = 100;
  m = ComputeMetrics({Ok(0.0, {{0.1, 1}}, 0.1, 1, 1)}, 1.0, exact);
  EXPECT_EQ(m.good_completed, 1u);
}

TEST(ClientBenchMetrics, TpotExcludesSingleTokenRequests) {
  const std::vector<RequestRecord> recs = {Ok(0, {{0.2, 1}}, 0.2, 5, 1),
                                           Ok(0, {{0.1, 1}}, 0.1, 5, 1)};
  const BenchMetrics m = ComputeMetrics(recs, 1.0, SloConfig{});
  EXPECT_EQ(m.tpot.count, 0u);
  EXPECT_EQ(m.tpot.mean, 0);
  EXPECT_EQ(m.itl.count, 0u);
  EXPECT_EQ(m.ttft.count, 2u);
}

TEST(ClientBenchMetrics, TpotUsesReportedTokensNotMessages) {
  // Ten tokens in two messages: TPOT divides by 9 tokens, ITL has one gap.
  const BenchMetrics m =
      ComputeMetrics({Ok(0, {{0.1, 5}, {1.0, 5}}, 1.0, 5, 10)}, 1.0, SloConfig{});
  EXPECT_NEAR(m.tpot.mean, 0.1, 1e-12);
  EXPECT_EQ(m.itl.count, 1u);
  EXPECT_NEAR(m.itl.mean, 0.9, 1e-12);
}

TEST(ClientBenchMetrics, SuccessWithoutTokensTakesTheFinalMessageForTtft) {
  const BenchMetrics m = ComputeMetrics({Ok(1.0, {}, 1.5, 5, 0)}, 1.0, SloConfig{});
  EXPECT_EQ(m.completed, 1u);
  EXPECT_NEAR(m.ttft.mean, 0.5, 1e-12);
  EXPECT_NEAR(m.e2el.mean, 0.5, 1e-12);
}

TEST(ClientBenchMetrics, AllFailed) {
  const BenchMetrics m = ComputeMetrics({Failed(0, 0.1, "UNAVAILABLE")}, 0.1, SloConfig{});
  EXPECT_EQ(m.completed, 0u);
  EXPECT_EQ(m.failed, 1u);
  EXPECT_EQ(m.ttft.count, 0u);
  EXPECT_EQ(m.peak_output_throughput, 0);
  EXPECT_EQ(m.peak_concurrency, 1u);
}

TEST(ClientBenchMetrics, PeakConcurrencyIsExactAndBackToBackDoesNotOverlap) {
  // Closed loop with 2 slots: each request starts exactly when another ends.
  std::vector<RequestRecord> recs = {Ok(0, {}, 1, 0, 0), Ok(0, {}, 2, 0, 0), Ok(1, {}, 3, 0, 0),
                                     Ok(2, {}, 3, 0, 0)};
  EXPECT_EQ(PeakConcurrency(recs), 2u);
  recs.push_back(Ok(2.5, {}, 2.6, 0, 0));
  EXPECT_EQ(PeakConcurrency(recs), 3u);
  EXPECT_EQ(PeakConcurrency({}), 0u);
}

TEST(ClientBenchMetrics, PeakOutputThroughputBucketsBySecond) {
  // Tokens at 0.5 s (3) and 1.2 s (4) and 1.9 s (2) after the first send: bucket 1 has 6.
  const BenchMetrics m = ComputeMetrics(
      {Ok(0, {{0.5, 3}, {1.2, 4}}, 1.2, 1, 7), Ok(0.1, {{1.9, 2}}, 1.9, 1, 2)}, 2.0, SloConfig{});
  EXPECT_DOUBLE_EQ(m.peak_output_throughput, 6.0);
}

}  // namespace
}  // namespace engram::client
