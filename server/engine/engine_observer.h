// What the engine reports as it runs, for the metrics registry (server/metrics/) and tests. The
// engine thread calls every method; implementations must be quick and must not block (the
// Prometheus types they feed are lock-free or briefly locked).
#pragma once

#include <cstdint>
#include <string_view>

namespace engram {

enum class FinishReason { kNone, kLength, kEos, kStop, kCancelled, kError };

std::string_view FinishReasonName(FinishReason r);  // "length", "eos", "stop", ... (vLLM spelling)

// One scheduler iteration, after its forward pass.
struct StepReport {
  int num_running = 0;            // sequences holding KV blocks after the step
  int num_waiting = 0;            // admitted to the queue but not yet scheduled
  double kv_cache_usage = 0;      // used blocks / all blocks, [0, 1]
  int64_t prompt_tokens = 0;      // prompt tokens computed in this step
  int64_t generation_tokens = 0;  // tokens sampled in this step
  int64_t num_preemptions = 0;    // sequences preempted (recompute) in this step
  double step_seconds = 0;        // wall time of the forward pass and sampling
};

struct RequestReport {
  FinishReason finish_reason = FinishReason::kNone;
  int64_t prompt_tokens = 0;
  int64_t generation_tokens = 0;
  double queue_seconds = 0;  // arrival to first scheduled
  double ttft_seconds = 0;   // arrival to first token (0 when none was produced); also
                             // reported by OnFirstToken when it happens
  double e2e_seconds = 0;    // arrival to finish
  int64_t max_new_tokens = 0;
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepReport& step) = 0;
  // Arrival to the first token of a request, when it is produced (vLLM's TTFT).
  virtual void OnFirstToken(double ttft_seconds) = 0;
  // Gap between two consecutive tokens of one request (vLLM's inter-token latency).
  virtual void OnInterTokenLatency(double seconds) = 0;
  virtual void OnRequestFinished(const RequestReport& request) = 0;
};

}  // namespace engram
