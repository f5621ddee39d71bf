#include "server/metrics/jemalloc_stats.h"

#include <jemalloc/jemalloc.h>

#include <cstddef>

#include "server/metrics/families.h"

namespace engram {

namespace {

bool ReadSize(const char* name, uint64_t* out) {
  size_t v = 0;
  size_t len = sizeof v;
  if (mallctl(name, &v, &len, nullptr, 0) != 0) return false;
  *out = v;
  return true;
}

}  // namespace

std::optional<JemallocStats> ReadJemallocStats() {
  // The stats.* values are a snapshot taken at the last epoch bump; without one they never move.
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  if (mallctl("epoch", &epoch, &len, &epoch, len) != 0) return std::nullopt;
  JemallocStats s;
  if (!ReadSize("stats.allocated", &s.allocated) || !ReadSize("stats.resident", &s.resident)) {
    return std::nullopt;
  }
  return s;
}

std::vector<prometheus::MetricFamily> JemallocCollector::Collect() const {
  using metrics_internal::AddSample;
  using metrics_internal::NewFamily;
  const std::optional<JemallocStats> s = ReadJemallocStats();
  if (!s) return {};
  std::vector<prometheus::MetricFamily> out;
  out.push_back(NewFamily("engram:jemalloc_allocated_bytes",
                          "Bytes allocated by the application through jemalloc.",
                          prometheus::MetricType::Gauge));
  AddSample(out.back(), model_name_, static_cast<double>(s->allocated));
  out.push_back(NewFamily("engram:jemalloc_resident_bytes",
                          "Bytes in physically resident data pages mapped by jemalloc.",
                          prometheus::MetricType::Gauge));
  AddSample(out.back(), model_name_, static_cast<double>(s->resident));
  return out;
}

}  // namespace engram
