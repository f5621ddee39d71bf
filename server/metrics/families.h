// Helpers for the collectors that build their metric families by hand at scrape time (the
// memory tier and jemalloc): every sample carries the model_name label like the registry's.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace engram::metrics_internal {

inline prometheus::MetricFamily NewFamily(std::string name, std::string help,
                                          prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

// Adds one counter or gauge sample (by the family's type) labelled model_name plus `extra`.
inline void AddSample(prometheus::MetricFamily& f, const std::string& model_name, double value,
                      std::vector<prometheus::ClientMetric::Label> extra = {}) {
  prometheus::ClientMetric m;
  m.label.push_back({"model_name", model_name});
  for (auto& l : extra) m.label.push_back(std::move(l));
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

}  // namespace engram::metrics_internal
