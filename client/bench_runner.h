// Sends the load test's requests and times them. It uses gRPC's callback API: each stream is a
// reactor whose OnReadDone stamps the message's arrival on the thread that received it, before
// doing anything else, so no queue or waiting thread sits between the network and the clock;
// and no thread per stream is needed, so an open loop can have thousands in flight.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "client/bench_metrics.h"
#include "client/channel.h"
#include "client/progress.h"
#include "engram/v1/inference.grpc.pb.h"

namespace engram::client {

class BenchCall;

class BenchRunner {
 public:
  explicit BenchRunner(const Connection& connection);
  ~BenchRunner();

  struct Result {
    std::vector<RequestRecord> records;  // one per request, in request order
    double duration_s = 0;               // from the first send to the last completion
    size_t sent = 0;                     // fewer than requested only when cancelled
  };
  // Sends requests[i] at arrivals[i] seconds after the start (all at once when `arrivals` is
  // empty), never more than `max_concurrency` in flight (0 = no limit: an open loop, or
  // everything at once), and waits for every stream to end. `prompt_lens[i]` is the prompt
  // length known beforehand (0 when unknown); the server's usage, when sent, takes precedence.
  Result Run(const std::vector<engram::v1::GenerateRequest>& requests,
             const std::vector<uint32_t>& prompt_lens, const std::vector<double>& arrivals,
             int64_t max_concurrency, ProgressBar* progress);

  // Stops sending and cancels every stream in flight; Run then returns what it has. Safe from
  // any thread.
  void CancelAll();
  bool cancelled() const { return cancelled_.load(); }

 private:
  friend class BenchCall;
  void Finished(BenchCall* call, double end_s, bool ok);

  const Connection& connection_;
  std::unique_ptr<engram::v1::InferenceService::Stub> stub_;
  std::atomic<bool> cancelled_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<BenchCall*, std::shared_ptr<BenchCall>> in_flight_;  // guarded by mu_
  double last_end_s_ = 0;                                                 // guarded by mu_
  std::atomic<size_t> done_{0};
  std::atomic<size_t> failed_{0};
};

}  // namespace engram::client
