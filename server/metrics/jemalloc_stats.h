// jemalloc's own view of the heap, read at scrape time: what the process has allocated and what
// of it is resident. Engram tables in the RAM tier are process memory too, so this is where a
// leak or fragmentation shows before the OOM killer does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace engram {

struct JemallocStats {
  uint64_t allocated = 0;  // bytes handed out to the application
  uint64_t resident = 0;   // bytes of physically resident pages jemalloc holds
};

// Refreshes jemalloc's statistics ("epoch") and reads them; nullopt when mallctl fails (jemalloc
// built without statistics).
std::optional<JemallocStats> ReadJemallocStats();

class JemallocCollector : public prometheus::Collectable {
 public:
  explicit JemallocCollector(std::string model_name) : model_name_(std::move(model_name)) {}
  // No series at all when the statistics cannot be read: a 0 would look like a real reading.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string model_name_;
};

}  // namespace engram
