// A generation request as the engine sees it, and the channel its output travels back on. The
// engine thread appends output to a RequestHandle and never waits for the consumer: a slow
// reader only lets output pile up (merged) in its handle, bounded by max_new_tokens.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/engine/engine_observer.h"
#include "server/engine/sampler.h"

namespace engram {

struct StoppingParams {
  int64_t max_new_tokens = 0;  // 0: up to the context limit
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool include_stop_str = false;
};

struct GenerateParams {
  SamplingParams sampling;
  StoppingParams stopping;
  int logprobs = 0;  // top-n alternatives per token, 0 = off
  bool return_gates = false;
};

struct EngineRequest {
  std::string id;
  std::vector<int32_t> prompt;
  GenerateParams params;
};

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;  // of the sampled token under the raw model distribution
  std::vector<TopLogprob> top;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double queue_seconds = 0;
  double ttft_seconds = 0;
  double e2e_seconds = 0;
};

// Output produced since the consumer last took it.
struct RequestOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprob> logprobs;         // one per token id when requested
  std::vector<std::vector<float>> gates;      // one per token id when requested: [layer * M + m]
  FinishReason finish = FinishReason::kNone;  // set once, with the last output
  std::string stop_reason;                    // the stop string, for kStop
  absl::Status error;                         // for kError
  Usage usage;                                // with the last output

  bool finished() const { return finish != FinishReason::kNone; }
  void MergeFrom(RequestOutput&& o);
};

class RequestHandle {
 public:
  RequestHandle(std::string id, std::function<void()> notify)
      : id_(std::move(id)), notify_(std::move(notify)) {}

  const std::string& id() const { return id_; }

  // Any thread: the engine stops the sequence at its next step and frees its KV blocks.
  void Cancel();
  bool cancelled() const;

  // Consumer: moves out everything appended since the last call; false when there is nothing.
  bool Take(RequestOutput* out);
  // Engine: appends, then calls notify (outside the lock).
  void Append(RequestOutput&& o);

 private:
  const std::string id_;
  std::function<void()> notify_;
  mutable std::mutex mu_;
  bool cancelled_ = false;
  bool has_pending_ = false;
  RequestOutput pending_;
};

}  // namespace engram
