// The Prometheus metrics of engramd (DESIGN §5): vLLM's names under the engram: prefix, fed by
// the engine through EngineObserver and by the API layer's rejections, plus the Engram memory
// tier and jemalloc figures read at scrape time. Every series carries model_name, as vLLM's do.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/engine/engine_observer.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace engram {

class Model;
class MemoryTierCollector;
class JemallocCollector;

class ServerMetrics : public EngineObserver {
 public:
  // `max_model_len` bounds the 1-2-5 buckets of the per-request token histograms, as vLLM's
  // max_model_len does; <= 0 takes kDefaultMaxModelLen.
  static constexpr int64_t kDefaultMaxModelLen = 131072;
  explicit ServerMetrics(std::string model_name, int64_t max_model_len = 0);
  ~ServerMetrics() override;
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Serves /metrics on "host:port" (port 0 picks a free one: see bound_port). Fails, naming
  // --metrics-port, when the address cannot be bound; fails when already started.
  absl::Status StartExposer(const std::string& bind_address);
  int bound_port() const;  // 0 before StartExposer

  // Starts reading the Engram memory tier figures from `model` (which must outlive this object's
  // exposer and every Serialize). Call once, after load.
  void AttachModel(const Model* model);
  // Publishes engram:cache_config_info{num_blocks=...}; a later call replaces the value.
  void SetKvCacheBlocks(int total);

  // Everything /metrics serves (less prometheus-cpp's own exposer_* series), in the text
  // exposition format.
  std::string Serialize() const;

  void OnStep(const StepReport& step) override;
  void OnFirstToken(double ttft_seconds) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestFinished(const RequestReport& request) override;

  // A request the API layer refused before it reached the engine; `grpc_code` is the code's
  // canonical name ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", ...). Any thread.
  void OnRequestRejected(std::string_view grpc_code);

 private:
  std::map<std::string, std::string> Labels() const;

  std::string model_name_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<MemoryTierCollector> memory_;
  std::shared_ptr<JemallocCollector> jemalloc_;

  prometheus::Gauge* num_running_ = nullptr;
  prometheus::Gauge* num_waiting_ = nullptr;
  prometheus::Gauge* kv_usage_ = nullptr;
  prometheus::Counter* prompt_tokens_ = nullptr;
  prometheus::Counter* generation_tokens_ = nullptr;
  prometheus::Counter* preemptions_ = nullptr;
  prometheus::Family<prometheus::Counter>* success_family_ = nullptr;
  std::array<prometheus::Counter*, 6> success_{};  // by FinishReason
  prometheus::Family<prometheus::Counter>* rejected_family_ = nullptr;
  prometheus::Family<prometheus::Gauge>* cache_info_family_ = nullptr;
  prometheus::Gauge* cache_info_ = nullptr;
  prometheus::Histogram* ttft_ = nullptr;
  prometheus::Histogram* itl_ = nullptr;
  prometheus::Histogram* e2e_ = nullptr;
  prometheus::Histogram* queue_ = nullptr;
  prometheus::Histogram* iteration_tokens_ = nullptr;
  prometheus::Histogram* request_prompt_tokens_ = nullptr;
  prometheus::Histogram* request_generation_tokens_ = nullptr;
  prometheus::Histogram* request_max_tokens_ = nullptr;

  // Last: destroyed first, so no scrape runs while the rest is torn down.
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace engram
