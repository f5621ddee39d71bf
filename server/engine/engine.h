// The serving engine (DESIGN §5): one thread owns the step loop. Each step takes every running
// sequence's next token (decodes first) and fills the rest of the token budget with prefill
// chunks, of running sequences first and then of newly admitted ones (continuous batching with
// chunked prefill, as vLLM schedules). KV blocks are reserved a step at a time; when they run
// out the most recently admitted sequence is preempted (its blocks freed, recomputed later from
// its tokens) so the oldest keep going. Blocks return to the pool on finish, cancel and error.
//
// Submit is thread-safe and never blocks on the engine; output goes back through the request's
// RequestHandle, which the engine never waits on.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/engine_observer.h"
#include "server/engine/request.h"
#include "server/engine/validate.h"
#include "server/model/kv_cache.h"
#include "server/model/model.h"
#include "server/tokenizer/tokenizer.h"

namespace engram {

struct EngineOptions {
  int block_size = 16;
  int kv_blocks = 0;  // 0: from kv_cache_bytes
  // 0: 1 GiB on a host-memory backend; on a device, what gpu_memory_utilization leaves.
  uint64_t kv_cache_bytes = 0;
  // Fraction of the device's memory this server may use in all (weights, activations, KV), as
  // in vLLM: the KV cache gets what remains of it after what is already allocated and a step's
  // activations.
  double gpu_memory_utilization = 0.9;
  int max_num_seqs = 64;             // sequences per step
  int max_num_batched_tokens = 512;  // tokens per step (decodes + prefill chunks)
  int max_queued_requests = 256;     // waiting requests beyond which Submit is RESOURCE_EXHAUSTED
  int64_t max_model_len = 0;         // 0: the model's max_position_embeddings
  bool log_requests = false;         // one stderr line per finished request
  // Decode steps as recorded graphs (model.h, StepGraphOptions); max_batch 0 (or above
  // max_num_seqs): max_num_seqs.
  StepGraphOptions graphs{StepGraphOptions::Mode::kAuto, 0};
};

struct EngineSnapshot {
  int running = 0;
  int waiting = 0;
  int used_blocks = 0;
  int total_blocks = 0;
  uint64_t steps = 0;
};

class Engine {
 public:
  // The model and tokenizer outlive the engine; the observer may be null.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(Model* model, const Tokenizer* tokenizer,
                                                        const EngineOptions& options,
                                                        EngineObserver* observer);
  ~Engine();  // cancels what is left and joins the thread

  // Validates (INVALID_ARGUMENT naming the field), then queues. RESOURCE_EXHAUSTED when the
  // queue is full, UNAVAILABLE once StopAccepting was called. `notify` runs on the engine thread
  // after each append to the handle; it must not block.
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(EngineRequest request,
                                                        std::function<void()> notify);

  // Draining: later Submits fail with UNAVAILABLE; queued and running requests go on.
  void StopAccepting();
  // Waits until no request is queued or running; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Cancels every queued and running request (they finish with kCancelled).
  void CancelAll();

  EngineSnapshot Snapshot() const;
  const EngineOptions& options() const { return options_; }
  RequestLimits limits() const { return limits_; }
  int64_t max_model_len() const { return limits_.max_model_len; }

 private:
  struct Sequence;
  using Clock = std::chrono::steady_clock;

  Engine(Model* model, const Tokenizer* tokenizer, const EngineOptions& options,
         EngineObserver* observer);
  void Loop();
  bool TakeIncoming(bool block);
  void ReapCancelled();
  void Schedule();
  void Preempt(Sequence* s);
  // Moves a pooled memory-layer state buffer into / out of the sequence's state.
  void TakeMemoryState(Sequence& s);
  void ReturnMemoryState(Sequence& s);
  absl::Status RunStep();
  // Emits one token: sampled here from `logits` (host memory), or, when logits is nullptr, the
  // token the backend sampled.
  void EmitToken(Sequence& s, float* logits, int32_t sampled, const std::vector<float>* gates_row);
  // Samples every sequence of the step that gets a token on the backend, from the logits
  // Forward left there; tokens[k] is step sequence k's token (or -1: none this step).
  void SampleOnBackend(std::vector<int32_t>* tokens);
  void ScheduleOnce();
  void Finish(Sequence& s, FinishReason reason, absl::Status error = absl::OkStatus());
  void FailStep(const absl::Status& error);
  void RemoveFinished();
  void PublishSnapshot();

  Model* model_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  EngineObserver* observer_;
  RequestLimits limits_;
  std::vector<int32_t> eos_ids_;
  KvCache kv_;
  int watermark_blocks_ = 1;
  // The memory layers' per-sequence state (Model::SequenceStateBytes), one buffer per running
  // sequence at most, allocated once beside the KV cache and counted when it was sized: a
  // sequence takes one when admitted and gives it back when preempted or finished.
  std::vector<BackendBuffer> free_states_;

  // Submit side.
  mutable std::mutex mu_;
  std::condition_variable cv_;       // engine: work arrived or stop
  std::condition_variable idle_cv_;  // WaitIdle: everything finished
  std::vector<std::unique_ptr<Sequence>> incoming_;
  int queued_ = 0;    // incoming + waiting, for the queue limit
  int inflight_ = 0;  // submitted and not finished
  bool accepting_ = true;
  bool stop_ = false;
  bool cancel_all_ = false;

  // Engine thread only.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order
  std::vector<Sequence*> step_seqs_;
  std::vector<StepEntry> step_;
  std::vector<int32_t> step_row_begin_;
  int64_t step_prompt_tokens_ = 0;
  int64_t step_generation_tokens_ = 0;
  int64_t step_preemptions_ = 0;
  double step_seconds_ = 0;
  std::atomic<uint64_t> fallback_seed_{0x5eed};
  ForwardOutput out_;
  std::vector<std::vector<float>> gates_;
  std::vector<float> scratch_;
  // Backend memory of SampleOnBackend: the packed inputs (index, params, penalty lists, random
  // states), the gathered logits rows and the tokens.
  BackendBuffer sample_meta_, sample_logits_, sample_tokens_;

  std::atomic<int> snap_running_{0}, snap_waiting_{0}, snap_used_blocks_{0};
  std::atomic<uint64_t> snap_steps_{0};
  std::thread thread_;
};

}  // namespace engram
