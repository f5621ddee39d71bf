// The load test's numbers, defined exactly as vLLM's benchmark_serving.py (`vllm bench serve`)
// defines them, so they can be read side by side with what users already know:
//   TTFT  first message carrying tokens - send time (per request);
//   TPOT  (E2E - TTFT) / (output tokens - 1), per request, only requests with > 1 token;
//   ITL   every gap between consecutive messages carrying tokens, pooled over all requests;
//   E2E   last message - send time (per request);
//   throughputs over the wall time of the measured phase; goodput = requests meeting every
//   given SLO (a single-token request's TPOT counts as 0, as vLLM does) per second;
//   mean / median / std / percentiles with numpy's defaults (std: population; percentiles:
//   linear interpolation between closest ranks), and 0 for an empty list, as np.mean(x or 0).
// Only successful requests enter the latency and token figures; failures are counted by status
// code name. Two additions of ours: peak concurrency is the exact maximum of requests in flight
// (all of them, failed ones too: they held a slot), not vLLM's per-second bucket count; and the
// peak output throughput counts tokens, not messages, per one-second bucket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace engram::client {

// What the runner measured for one request; times in seconds from the start of the run, taken
// on the receiving thread as each message arrives.
struct RequestRecord {
  struct Chunk {
    double t = 0;
    uint32_t tokens = 0;
  };
  bool ok = false;
  std::string code;     // status code name ("OK", "RESOURCE_EXHAUSTED", ...)
  std::string message;  // the error message, for failures
  double send_s = 0;
  std::vector<Chunk> chunks;  // messages that carried tokens, in arrival order
  double end_s = 0;           // arrival of the last message (of the status, for a failure)
  uint32_t prompt_tokens = 0;
  uint32_t output_tokens = 0;
};

// Latency statistics, in seconds.
struct LatencySummary {
  size_t count = 0;
  double mean = 0;
  double median = 0;
  double std = 0;
  double p90 = 0;
  double p99 = 0;
};

// Service-level objectives for goodput, in milliseconds; unset = not constrained.
struct SloConfig {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};

struct BenchMetrics {
  size_t completed = 0;
  size_t failed = 0;
  std::map<std::string, size_t> failed_by_code;
  std::map<std::string, std::string> error_examples;  // the first message seen for each code
  double duration_s = 0;
  uint64_t total_input_tokens = 0;
  uint64_t total_output_tokens = 0;
  double request_throughput = 0;      // completed requests / s
  double output_throughput = 0;       // output tokens / s
  double total_token_throughput = 0;  // (input + output tokens) / s
  bool has_goodput = false;
  size_t good_completed = 0;
  double request_goodput = 0;         // requests meeting the SLOs / s
  double peak_output_throughput = 0;  // most output tokens received in one one-second bucket
  size_t peak_concurrency = 0;
  LatencySummary ttft, tpot, itl, e2el;
};

// numpy.percentile(values, p) with the default linear method; `sorted` ascending, non-empty.
double Percentile(const std::vector<double>& sorted, double p);
LatencySummary Summarize(std::vector<double> values);
// The exact maximum number of [send_s, end_s) intervals that overlap.
size_t PeakConcurrency(const std::vector<RequestRecord>& records);

BenchMetrics ComputeMetrics(const std::vector<RequestRecord>& records, double duration_s,
                            const SloConfig& slo);

}  // namespace engram::client
