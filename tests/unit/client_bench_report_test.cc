// engram-client bench's report: the vLLM-style table and the JSON file's keys.
#include "client/bench_report.h"

#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace engram::client {
namespace {

BenchMetrics SomeMetrics() {
  RequestRecord a;
  a.ok = true;
  a.code = "OK";
  a.send_s = 0;
  a.chunks = {{0.1, 1}, {0.2, 1}, {0.3, 1}};
  a.end_s = 0.3;
  a.prompt_tokens = 10;
  a.output_tokens = 3;
  RequestRecord f;
  f.code = "RESOURCE_EXHAUSTED";
  f.message = "queue full";
  SloConfig slo;
  slo.ttft_ms = 500;
  return ComputeMetrics({a, f}, 1.0, slo);
}

BenchConfig SomeConfig() {
  BenchConfig c;
  c.date = "20250101-000000";
  c.server = "127.0.0.1:50051";
  c.model = "demo";
  c.dataset = "random";
  c.num_prompts = 2;
  c.request_rate = std::numeric_limits<double>::infinity();
  c.max_concurrency = 8;
  c.input_len = {100, 1024};
  c.output_len = {100, 1024};
  c.slo.ttft_ms = 500;
  return c;
}

TEST(ClientBenchReport, JsonHasEveryMetric) {
  const nlohmann::json j = ReportJson(SomeConfig(), SomeMetrics());
  for (const char* key : {"date",
                          "backend",
                          "server",
                          "model_id",
                          "dataset",
                          "num_prompts",
                          "warmup",
                          "request_rate",
                          "burstiness",
                          "max_concurrency",
                          "seed",
                          "input_len",
                          "output_len",
                          "ignore_eos",
                          "slo",
                          "duration",
                          "completed",
                          "failed",
                          "failed_by_code",
                          "error_examples",
                          "total_input_tokens",
                          "total_output_tokens",
                          "request_throughput",
                          "request_goodput",
                          "good_completed",
                          "output_throughput",
                          "total_token_throughput",
                          "max_output_tokens_per_s",
                          "peak_concurrency"})
    EXPECT_TRUE(j.contains(key)) << key;
  for (const char* metric : {"ttft", "tpot", "itl", "e2el"})
    for (const char* stat : {"mean", "median", "std", "p90", "p99"})
      EXPECT_TRUE(j.contains(std::string(stat) + "_" + metric + "_ms")) << stat << " " << metric;
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["completed"], 1);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["failed_by_code"]["RESOURCE_EXHAUSTED"], 1);
  EXPECT_EQ(j["error_examples"]["RESOURCE_EXHAUSTED"], "queue full");
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 100.0, 1e-9);
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 100.0, 1e-9);
  EXPECT_NEAR(j["mean_itl_ms"].get<double>(), 100.0, 1e-9);
  EXPECT_NEAR(j["mean_e2el_ms"].get<double>(), 300.0, 1e-9);
  EXPECT_NEAR(j["request_goodput"].get<double>(), 1.0, 1e-12);
  EXPECT_FALSE(j.contains("ttfts"));
  // The file must survive a round trip through a JSON parser.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), j);
}

TEST(ClientBenchReport, PerRequestLists) {
  RequestRecord a;
  a.ok = true;
  a.send_s = 1;
  a.chunks = {{1.5, 1}, {1.75, 2}};
  a.end_s = 2;
  a.prompt_tokens = 4;
  a.output_tokens = 3;
  RequestRecord f;
  f.code = "UNAVAILABLE";
  f.message = "down";
  const std::vector<RequestRecord> recs = {a, f};
  const nlohmann::json j = ReportJson(SomeConfig(), ComputeMetrics(recs, 1, {}), &recs);
  EXPECT_EQ(j["input_lens"], nlohmann::json({4, 0}));
  EXPECT_EQ(j["output_lens"], nlohmann::json({3, 0}));
  EXPECT_EQ(j["ttfts"], nlohmann::json({0.5, 0.0}));
  EXPECT_EQ(j["itls"][0], nlohmann::json({0.25}));
  EXPECT_EQ(j["e2els"], nlohmann::json({1.0, 0.0}));
  EXPECT_EQ(j["errors"], nlohmann::json({"", "UNAVAILABLE: down"}));
}

TEST(ClientBenchReport, TableLooksLikeVllms) {
  const std::string t = FormatReport(SomeConfig(), SomeMetrics());
  // vLLM's rules: '{s:{c}^{n}}'.format(s=..., n=50, c=...), labels padded to 40 columns.
  EXPECT_EQ(t.substr(0, 51), "============ Serving Benchmark Result ============\n");
  EXPECT_NE(t.find("---------------Time to First Token----------------\n"), std::string::npos);
  EXPECT_NE(t.find("-----Time per Output Token (excl. 1st token)------\n"), std::string::npos);
  EXPECT_NE(t.find("---------------Inter-token Latency----------------\n"), std::string::npos);
  EXPECT_NE(t.find("----------------End-to-end Latency----------------\n"), std::string::npos);
  EXPECT_NE(t.find("Successful requests:                     1\n"), std::string::npos);
  EXPECT_NE(t.find("Failed requests:                         1\n"), std::string::npos);
  EXPECT_NE(t.find("  RESOURCE_EXHAUSTED:                    1\n"), std::string::npos);
  EXPECT_NE(t.find("Maximum request concurrency:             8\n"), std::string::npos);
  // As vLLM: the configured rate only when there is one.
  EXPECT_EQ(t.find("Request rate configured"), std::string::npos);
  BenchConfig open_loop = SomeConfig();
  open_loop.request_rate = 12.5;
  EXPECT_NE(FormatReport(open_loop, SomeMetrics())
                .find("Request rate configured (RPS):           12.50\n"),
            std::string::npos);
  EXPECT_NE(t.find("Request goodput (req/s):                 1.00\n"), std::string::npos);
  EXPECT_NE(t.find("Mean TTFT (ms):                          100.00\n"), std::string::npos);
  for (const char* label :
       {"Median TPOT (ms):", "P90 ITL (ms):", "P99 E2EL (ms):", "Output token throughput (tok/s):",
        "Total Token throughput (tok/s):", "Peak concurrent requests:", "Benchmark duration (s):"})
    EXPECT_NE(t.find(label), std::string::npos) << label;
  EXPECT_EQ(t.substr(t.size() - 51), std::string(50, '=') + "\n");
}

}  // namespace
}  // namespace engram::client
