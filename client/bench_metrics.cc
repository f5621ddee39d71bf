#include "client/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace engram::client {

double Percentile(const std::vector<double>& sorted, double p) {
  // numpy: the value at fractional rank p/100 * (n - 1), linearly interpolated.
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / n);
  s.median = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  return s;
}

size_t PeakConcurrency(const std::vector<RequestRecord>& records) {
  std::vector<std::pair<double, int>> events;
  events.reserve(records.size() * 2);
  for (const auto& r : records) {
    events.emplace_back(r.send_s, +1);
    events.emplace_back(r.end_s, -1);
  }
  // At equal times the end sorts first (-1 < +1): a request that finishes as another starts
  // freed its slot for it.
  std::sort(events.begin(), events.end());
  size_t peak = 0;
  long in_flight = 0;
  for (const auto& e : events) {
    in_flight += e.second;
    peak = std::max(peak, static_cast<size_t>(std::max(0L, in_flight)));
  }
  return peak;
}

BenchMetrics ComputeMetrics(const std::vector<RequestRecord>& records, double duration_s,
                            const SloConfig& slo) {
  BenchMetrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  double first_send = 0, last_end = 0;
  bool any_ok = false;
  for (const auto& r : records) {
    if (!r.ok) {
      ++m.failed;
      ++m.failed_by_code[r.code];
      m.error_examples.emplace(r.code, r.message);
      continue;
    }
    ++m.completed;
    m.total_input_tokens += r.prompt_tokens;
    m.total_output_tokens += r.output_tokens;
    const double e2e = r.end_s - r.send_s;
    // A successful stream whose messages carried no tokens: its first (and last) message is the
    // final one, as vLLM takes the finish chunk for the first when no text came before it.
    const double ttft = r.chunks.empty() ? e2e : r.chunks.front().t - r.send_s;
    double tpot = 0;  // vLLM's goodput counts a single-token request's TPOT as 0
    if (r.output_tokens > 1) {
      tpot = (e2e - ttft) / static_cast<double>(r.output_tokens - 1);
      tpots.push_back(tpot);
    }
    for (size_t i = 1; i < r.chunks.size(); ++i) itls.push_back(r.chunks[i].t - r.chunks[i - 1].t);
    ttfts.push_back(ttft);
    e2els.push_back(e2e);
    if (!any_ok || r.send_s < first_send) first_send = r.send_s;
    if (!any_ok || r.end_s > last_end) last_end = r.end_s;
    any_ok = true;
    if (slo.any()) {
      const bool good = (!slo.ttft_ms || ttft * 1e3 <= *slo.ttft_ms) &&
                        (!slo.tpot_ms || tpot * 1e3 <= *slo.tpot_ms) &&
                        (!slo.e2el_ms || e2e * 1e3 <= *slo.e2el_ms);
      if (good) ++m.good_completed;
    }
  }
  if (duration_s > 0) {
    m.request_throughput = static_cast<double>(m.completed) / duration_s;
    m.output_throughput = static_cast<double>(m.total_output_tokens) / duration_s;
    m.total_token_throughput =
        static_cast<double>(m.total_input_tokens + m.total_output_tokens) / duration_s;
  }
  m.has_goodput = slo.any();
  if (m.has_goodput && duration_s > 0)
    m.request_goodput = static_cast<double>(m.good_completed) / duration_s;
  m.ttft = Summarize(std::move(ttfts));
  m.tpot = Summarize(std::move(tpots));
  m.itl = Summarize(std::move(itls));
  m.e2el = Summarize(std::move(e2els));

  if (any_ok) {
    // One-second buckets from the earliest send, as vLLM's "peak output token throughput".
    std::vector<double> per_second(static_cast<size_t>(std::ceil(last_end - first_send)) + 1, 0);
    for (const auto& r : records) {
      if (!r.ok) continue;
      for (const auto& c : r.chunks) {
        const double offset = c.t - first_send;
        if (offset < 0) continue;
        const size_t bucket = static_cast<size_t>(offset);
        if (bucket < per_second.size()) per_second[bucket] += c.tokens;
      }
    }
    m.peak_output_throughput = *std::max_element(per_second.begin(), per_second.end());
  }
  m.peak_concurrency = PeakConcurrency(records);
  return m;
}

}  // namespace engram::client
