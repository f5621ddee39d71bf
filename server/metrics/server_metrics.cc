#include "server/metrics/server_metrics.h"

#include <exception>
#include <utility>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/metrics/jemalloc_stats.h"
#include "server/metrics/memory_tier_collector.h"
#include "server/model/model.h"

namespace engram {

namespace {

using prometheus::Histogram;

// vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max_value.
Histogram::BucketBoundaries Buckets125(int64_t max_value) {
  Histogram::BucketBoundaries b;
  for (int64_t scale = 1;; scale *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (m * scale > max_value) return b;
      b.push_back(static_cast<double>(m * scale));
    }
  }
}

// Bucket boundaries as vLLM (v1/metrics/loggers.py) has them, so dashboards and SLO rules built
// for vLLM read the same `le` values here.
const Histogram::BucketBoundaries kTtftBuckets = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
    1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const Histogram::BucketBoundaries kTokenLatencyBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                                          0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                                          7.5,  10.0,  20.0, 40.0,  80.0};
const Histogram::BucketBoundaries kRequestLatencyBuckets = {
    0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const Histogram::BucketBoundaries kIterationTokenBuckets = {1,   8,    16,   32,   64,   128,  256,
                                                            512, 1024, 2048, 4096, 8192, 16384};

}  // namespace

ServerMetrics::ServerMetrics(std::string model_name, int64_t max_model_len)
    : model_name_(std::move(model_name)),
      registry_(std::make_shared<prometheus::Registry>()),
      memory_(std::make_shared<MemoryTierCollector>(model_name_)),
      jemalloc_(std::make_shared<JemallocCollector>(model_name_)) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  prometheus::Registry& r = *registry_;
  const auto labels = Labels();
  auto gauge = [&](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Labels(labels).Register(r).Add({});
  };
  // prometheus-cpp 1.0 writes a counter's name as given (no _total appended), so the names carry
  // the suffix themselves, as vLLM's exposed names do.
  auto counter = [&](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Labels(labels).Register(r).Add({});
  };
  auto histogram = [&](const char* name, const char* help, const Histogram::BucketBoundaries& b) {
    return &BuildHistogram().Name(name).Help(help).Labels(labels).Register(r).Add({}, b);
  };

  num_running_ = gauge("engram:num_requests_running", "Number of requests in model execution.");
  num_waiting_ =
      gauge("engram:num_requests_waiting", "Number of requests waiting to be scheduled.");
  kv_usage_ = gauge("engram:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.");
  prompt_tokens_ = counter("engram:prompt_tokens_total", "Number of prefill tokens processed.");
  generation_tokens_ =
      counter("engram:generation_tokens_total", "Number of generation tokens processed.");
  preemptions_ =
      counter("engram:num_preemptions_total", "Cumulative number of preemptions by the engine.");

  success_family_ = &BuildCounter()
                         .Name("engram:request_success_total")
                         .Help("Count of finished requests, by finish reason.")
                         .Labels(labels)
                         .Register(r);
  // Created up front (as vLLM does) so rate() sees every reason from 0; "none" only if it occurs.
  for (FinishReason f : {FinishReason::kLength, FinishReason::kEos, FinishReason::kStop,
                         FinishReason::kCancelled, FinishReason::kError}) {
    success_[static_cast<size_t>(f)] =
        &success_family_->Add({{"finished_reason", std::string(FinishReasonName(f))}});
  }
  rejected_family_ = &BuildCounter()
                          .Name("engram:request_rejected_total")
                          .Help("Requests refused before reaching the engine, by gRPC status code.")
                          .Labels(labels)
                          .Register(r);
  for (const char* code : {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}) {
    rejected_family_->Add({{"grpc_code", code}});
  }
  cache_info_family_ = &BuildGauge()
                            .Name("engram:cache_config_info")
                            .Help("Information of the KV cache configuration.")
                            .Labels(labels)
                            .Register(r);

  ttft_ = histogram("engram:time_to_first_token_seconds",
                    "Histogram of time to first token in seconds.", kTtftBuckets);
  itl_ = histogram("engram:inter_token_latency_seconds",
                   "Histogram of inter-token latency in seconds.", kTokenLatencyBuckets);
  e2e_ = histogram("engram:e2e_request_latency_seconds",
                   "Histogram of e2e request latency in seconds.", kRequestLatencyBuckets);
  queue_ =
      histogram("engram:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.", kRequestLatencyBuckets);
  iteration_tokens_ =
      histogram("engram:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                kIterationTokenBuckets);
  const Histogram::BucketBoundaries tokens =
      Buckets125(max_model_len > 0 ? max_model_len : kDefaultMaxModelLen);
  request_prompt_tokens_ =
      histogram("engram:request_prompt_tokens", "Number of prefill tokens processed.", tokens);
  request_generation_tokens_ = histogram("engram:request_generation_tokens",
                                         "Number of generation tokens processed.", tokens);
  request_max_tokens_ = histogram("engram:request_params_max_tokens",
                                  "Histogram of the max_tokens request parameter.", tokens);
}

ServerMetrics::~ServerMetrics() = default;

std::map<std::string, std::string> ServerMetrics::Labels() const {
  return {{"model_name", model_name_}};
}

absl::Status ServerMetrics::StartExposer(const std::string& bind_address) {
  if (exposer_ != nullptr) return absl::FailedPreconditionError("metrics exposer already started");
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(bind_address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    // CivetWeb gives no reason (its message is "null context ... binding to port"), so name the
    // likely ones and the flag to change.
    return absl::UnavailableError(
        "--metrics-port: cannot serve metrics on " + bind_address +
        " (port in use, not permitted, or not a local address): " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(memory_);
  exposer_->RegisterCollectable(jemalloc_);
  return absl::OkStatus();
}

int ServerMetrics::bound_port() const {
  if (exposer_ == nullptr) return 0;
  const std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerMetrics::AttachModel(const Model* model) { memory_->Attach(model); }

void ServerMetrics::SetKvCacheBlocks(int total) {
  if (cache_info_ != nullptr) cache_info_family_->Remove(cache_info_);
  cache_info_ = &cache_info_family_->Add({{"num_blocks", std::to_string(total)}});
  cache_info_->Set(1);
}

std::string ServerMetrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const prometheus::Collectable* c :
       {static_cast<const prometheus::Collectable*>(memory_.get()),
        static_cast<const prometheus::Collectable*>(jemalloc_.get())}) {
    for (prometheus::MetricFamily& f : c->Collect()) families.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(families);
}

void ServerMetrics::OnStep(const StepReport& step) {
  num_running_->Set(step.num_running);
  num_waiting_->Set(step.num_waiting);
  kv_usage_->Set(step.kv_cache_usage);
  prompt_tokens_->Increment(static_cast<double>(step.prompt_tokens));
  generation_tokens_->Increment(static_cast<double>(step.generation_tokens));
  preemptions_->Increment(static_cast<double>(step.num_preemptions));
  // A report of an idle engine (gauges only) is not an iteration.
  const int64_t tokens = step.prompt_tokens + step.generation_tokens;
  if (tokens > 0) iteration_tokens_->Observe(static_cast<double>(tokens));
}

// Observed when the token appears, as vLLM does, so TTFT panels do not lag by the request's length.
void ServerMetrics::OnFirstToken(double ttft_seconds) { ttft_->Observe(ttft_seconds); }

void ServerMetrics::OnInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServerMetrics::OnRequestFinished(const RequestReport& request) {
  const auto reason = static_cast<size_t>(request.finish_reason);
  if (reason < success_.size()) {
    // Only kNone can be missing, and only the engine thread gets here: no race on the slot.
    if (success_[reason] == nullptr) {
      success_[reason] = &success_family_->Add(
          {{"finished_reason", std::string(FinishReasonName(request.finish_reason))}});
    }
    success_[reason]->Increment();
  }
  // A request that produced no token has no time to first token (the report holds 0 for it).
  e2e_->Observe(request.e2e_seconds);
  queue_->Observe(request.queue_seconds);
  request_prompt_tokens_->Observe(static_cast<double>(request.prompt_tokens));
  request_generation_tokens_->Observe(static_cast<double>(request.generation_tokens));
  if (request.max_new_tokens > 0) {
    request_max_tokens_->Observe(static_cast<double>(request.max_new_tokens));
  }
}

void ServerMetrics::OnRequestRejected(std::string_view grpc_code) {
  // Family::Add returns the existing counter for known labels; it locks, but rejections are rare.
  rejected_family_->Add({{"grpc_code", std::string(grpc_code)}}).Increment();
}

}  // namespace engram
