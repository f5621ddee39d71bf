// The Engram memory tier's figures, read from the prefetcher's and table stores' atomic counters
// at scrape time (so the prefetch thread pays nothing for them), summed over every Engram layer.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/memory/prefetcher.h"

namespace engram {

class MemoryTierCollector : public prometheus::Collectable {
 public:
  explicit MemoryTierCollector(std::string model_name) : model_name_(std::move(model_name)) {}

  // The prefetcher must outlive every later Collect. It may have no slots (Engram disabled):
  // the series are then all zero, so dashboards see the same set on every server.
  void Attach(const EngramPrefetcher* prefetcher) {
    prefetcher_.store(prefetcher, std::memory_order_release);
  }

  // Nothing before Attach.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string model_name_;
  // Atomic because a scrape may already be running on the exposer's thread when Attach is called.
  std::atomic<const EngramPrefetcher*> prefetcher_{nullptr};
};

}  // namespace engram
