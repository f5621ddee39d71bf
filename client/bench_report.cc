#include "client/bench_report.h"

#include <cmath>
#include <cstdio>

#include "server/util/str_cat.h"

namespace engram::client {
namespace {

constexpr int kWidth = 50;

std::string Centered(std::string_view title, char fill) {
  const size_t n = title.size() >= kWidth ? 0 : kWidth - title.size();
  // Python's str.format '^' puts the odd fill character on the right.
  return StrCat(std::string(n / 2, fill), title, std::string(n - n / 2, fill), "\n");
}

std::string Row(std::string_view label, std::string_view value) {
  std::string line(label);
  line.resize(std::max<size_t>(line.size(), 40), ' ');
  return StrCat(line, " ", value, "\n");
}

std::string Fixed2(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void LatencyRows(std::string* out, std::string_view title, std::string_view name,
                 const LatencySummary& s) {
  absl::StrAppend(out, Centered(title, '-'));
  absl::StrAppend(out, Row(StrCat("Mean ", name, " (ms):"), Fixed2(s.mean * 1e3)));
  absl::StrAppend(out, Row(StrCat("Median ", name, " (ms):"), Fixed2(s.median * 1e3)));
  absl::StrAppend(out, Row(StrCat("P90 ", name, " (ms):"), Fixed2(s.p90 * 1e3)));
  absl::StrAppend(out, Row(StrCat("P99 ", name, " (ms):"), Fixed2(s.p99 * 1e3)));
}

void LatencyKeys(nlohmann::json& j, const std::string& name, const LatencySummary& s) {
  j["mean_" + name + "_ms"] = s.mean * 1e3;
  j["median_" + name + "_ms"] = s.median * 1e3;
  j["std_" + name + "_ms"] = s.std * 1e3;
  j["p90_" + name + "_ms"] = s.p90 * 1e3;
  j["p99_" + name + "_ms"] = s.p99 * 1e3;
  j[name + "_count"] = s.count;
}

nlohmann::json OptionalNumber(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

std::string FormatReport(const BenchConfig& c, const BenchMetrics& m) {
  std::string out = Centered(" Serving Benchmark Result ", '=');
  absl::StrAppend(&out, Row("Successful requests:", StrCat(m.completed)));
  absl::StrAppend(&out, Row("Failed requests:", StrCat(m.failed)));
  for (const auto& [code, n] : m.failed_by_code)
    absl::StrAppend(&out, Row(StrCat("  ", code, ":"), StrCat(n)));
  if (c.max_concurrency > 0)
    absl::StrAppend(&out, Row("Maximum request concurrency:", StrCat(c.max_concurrency)));
  if (!std::isinf(c.request_rate))
    absl::StrAppend(&out, Row("Request rate configured (RPS):", Fixed2(c.request_rate)));
  absl::StrAppend(&out, Row("Benchmark duration (s):", Fixed2(m.duration_s)));
  absl::StrAppend(&out, Row("Total input tokens:", StrCat(m.total_input_tokens)));
  absl::StrAppend(&out, Row("Total generated tokens:", StrCat(m.total_output_tokens)));
  absl::StrAppend(&out, Row("Request throughput (req/s):", Fixed2(m.request_throughput)));
  if (m.has_goodput)
    absl::StrAppend(&out, Row("Request goodput (req/s):", Fixed2(m.request_goodput)));
  absl::StrAppend(&out, Row("Output token throughput (tok/s):", Fixed2(m.output_throughput)));
  absl::StrAppend(&out,
                  Row("Peak output token throughput (tok/s):", Fixed2(m.peak_output_throughput)));
  absl::StrAppend(&out, Row("Peak concurrent requests:", StrCat(m.peak_concurrency)));
  absl::StrAppend(&out, Row("Total Token throughput (tok/s):", Fixed2(m.total_token_throughput)));
  LatencyRows(&out, "Time to First Token", "TTFT", m.ttft);
  LatencyRows(&out, "Time per Output Token (excl. 1st token)", "TPOT", m.tpot);
  LatencyRows(&out, "Inter-token Latency", "ITL", m.itl);
  LatencyRows(&out, "End-to-end Latency", "E2EL", m.e2el);
  absl::StrAppend(&out, std::string(kWidth, '='), "\n");
  return out;
}

nlohmann::json ReportJson(const BenchConfig& c, const BenchMetrics& m,
                          const std::vector<RequestRecord>* records) {
  nlohmann::json j;
  j["date"] = c.date;
  j["backend"] = "engram-grpc";
  j["server"] = c.server;
  j["model_id"] = c.model;
  j["dataset"] = c.dataset;
  j["num_prompts"] = c.num_prompts;
  j["warmup"] = c.warmup;
  // JSON has no infinity; vLLM's Python json writes the non-standard Infinity, we write "inf".
  j["request_rate"] =
      std::isinf(c.request_rate) ? nlohmann::json("inf") : nlohmann::json(c.request_rate);
  j["burstiness"] = c.burstiness;
  j["max_concurrency"] =
      c.max_concurrency > 0 ? nlohmann::json(c.max_concurrency) : nlohmann::json(nullptr);
  j["seed"] = c.seed;
  j["input_len"] = c.dataset == "random" ? nlohmann::json({c.input_len.min, c.input_len.max})
                                         : nlohmann::json(nullptr);
  j["output_len"] = {c.output_len.min, c.output_len.max};
  j["ignore_eos"] = c.ignore_eos;
  j["slo"] = {{"ttft_ms", OptionalNumber(c.slo.ttft_ms)},
              {"tpot_ms", OptionalNumber(c.slo.tpot_ms)},
              {"e2el_ms", OptionalNumber(c.slo.e2el_ms)}};

  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["failed_by_code"] = nlohmann::json::object();
  for (const auto& [code, n] : m.failed_by_code) j["failed_by_code"][code] = n;
  j["error_examples"] = nlohmann::json::object();
  for (const auto& [code, msg] : m.error_examples) j["error_examples"][code] = msg;
  j["total_input_tokens"] = m.total_input_tokens;
  j["total_output_tokens"] = m.total_output_tokens;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] =
      m.has_goodput ? nlohmann::json(m.request_goodput) : nlohmann::json(nullptr);
  j["good_completed"] = m.has_goodput ? nlohmann::json(m.good_completed) : nlohmann::json(nullptr);
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  j["max_output_tokens_per_s"] = m.peak_output_throughput;
  j["peak_concurrency"] = m.peak_concurrency;
  LatencyKeys(j, "ttft", m.ttft);
  LatencyKeys(j, "tpot", m.tpot);
  LatencyKeys(j, "itl", m.itl);
  LatencyKeys(j, "e2el", m.e2el);

  if (records != nullptr) {
    auto& in = j["input_lens"] = nlohmann::json::array();
    auto& outl = j["output_lens"] = nlohmann::json::array();
    auto& ttfts = j["ttfts"] = nlohmann::json::array();
    auto& itls = j["itls"] = nlohmann::json::array();
    auto& e2els = j["e2els"] = nlohmann::json::array();
    auto& errors = j["errors"] = nlohmann::json::array();
    for (const auto& r : *records) {
      // Seconds, as vLLM stores its per-request lists.
      const double e2e = r.end_s - r.send_s;
      const double ttft = r.chunks.empty() ? e2e : r.chunks.front().t - r.send_s;
      nlohmann::json gaps = nlohmann::json::array();
      for (size_t i = 1; i < r.chunks.size(); ++i)
        gaps.push_back(r.chunks[i].t - r.chunks[i - 1].t);
      in.push_back(r.prompt_tokens);
      outl.push_back(r.ok ? r.output_tokens : 0);
      ttfts.push_back(r.ok ? nlohmann::json(ttft) : nlohmann::json(0.0));
      itls.push_back(r.ok ? gaps : nlohmann::json::array());
      e2els.push_back(r.ok ? nlohmann::json(e2e) : nlohmann::json(0.0));
      errors.push_back(r.ok ? std::string() : StrCat(r.code, ": ", r.message));
    }
  }
  return j;
}

}  // namespace engram::client
