// The Engram memory tier's figures, read from the prefetcher's, table stores' and backend tables'
// atomic counters
// at scrape time (so the prefetch thread pays nothing for them), summed over every Engram layer.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/model/model.h"

namespace engram {

class MemoryTierCollector : public prometheus::Collectable {
 public:
  explicit MemoryTierCollector(std::string model_name) : model_name_(std::move(model_name)) {}

  // The model must outlive every later Collect. It may have no Engram layers (Engram
  // disabled): the series are then all zero, so dashboards see the same set on every server.
  void Attach(const Model* model) { model_.store(model, std::memory_order_release); }

  // Nothing before Attach.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string model_name_;
  // Atomic because a scrape may already be running on the exposer's thread when Attach is called.
  std::atomic<const Model*> model_{nullptr};
};

}  // namespace engram
