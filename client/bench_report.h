// The load test's report: the terminal table in the layout `vllm bench serve` prints (same
// labels, same order, same 50-column rules) plus our additions (failures by code, P90), and the
// --json file with every metric under vLLM's key names (mean_ttft_ms, request_throughput, ...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/bench_metrics.h"
#include "client/flags.h"
#include "nlohmann/json.hpp"

namespace engram::client {

// What was run, for the report's header and the JSON's configuration keys.
struct BenchConfig {
  std::string date;  // local time, "YYYYmmdd-HHMMSS" as vLLM names its result files
  std::string server;
  std::string model;
  std::string dataset;  // "random" or the JSONL path
  size_t num_prompts = 0;
  size_t warmup = 0;
  double request_rate = 0;  // inf: all requests at once (or as --concurrency allows)
  double burstiness = 1;
  int64_t max_concurrency = 0;  // 0: none
  uint64_t seed = 0;
  IntRange input_len;   // random prompts only
  IntRange output_len;  // max-tokens
  bool ignore_eos = false;
  SloConfig slo;
};

std::string FormatReport(const BenchConfig& config, const BenchMetrics& metrics);

// Every metric; with `records`, also per-request arrays (input_lens, output_lens, ttfts, itls,
// e2els, errors) as vLLM saves them.
nlohmann::json ReportJson(const BenchConfig& config, const BenchMetrics& metrics,
                          const std::vector<RequestRecord>* records = nullptr);

}  // namespace engram::client
