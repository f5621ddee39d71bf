#include "client/bench_runner.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "client/rpc_status.h"

namespace engram::client {

using Clock = std::chrono::steady_clock;

namespace {
double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
}  // namespace

class BenchCall : public grpc::ClientReadReactor<engram::v1::GenerateResponse> {
 public:
  BenchCall(BenchRunner* runner, const engram::v1::GenerateRequest* request, uint32_t prompt_len,
            RequestRecord* record, Clock::time_point start)
      : runner_(runner),
        request_(request),
        prompt_len_(prompt_len),
        record_(record),
        start_(start) {}

  // May run OnDone (and so release this object) before it returns: touch nothing after.
  void Start(engram::v1::InferenceService::Stub* stub, const Connection& connection) {
    connection.Prepare(&context_);
    record_->send_s = Since(start_);
    stub->async()->Generate(&context_, request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;                 // the stream ended; OnDone follows with the status
    const double t = Since(start_);  // first: the arrival time is the point of this class
    const auto n = static_cast<uint32_t>(response_.token_ids_size());
    if (n > 0 || !response_.text().empty()) record_->chunks.push_back({t, n});
    tokens_ += n;
    last_message_s_ = t;
    got_message_ = true;
    if (response_.has_usage()) {
      usage_ = true;
      prompt_tokens_ = response_.usage().prompt_tokens();
      completion_tokens_ = response_.usage().completion_tokens();
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    const double t = Since(start_);
    record_->ok = status.ok();
    record_->code = StatusCodeName(status.error_code());
    if (!status.ok()) record_->message = status.error_message();
    record_->end_s = status.ok() && got_message_ ? last_message_s_ : t;
    record_->prompt_tokens = usage_ ? prompt_tokens_ : prompt_len_;
    record_->output_tokens = usage_ ? completion_tokens_ : tokens_;
    runner_->Finished(this, record_->end_s, status.ok());
  }

 private:
  BenchRunner* runner_;
  const engram::v1::GenerateRequest* request_;
  uint32_t prompt_len_;
  RequestRecord* record_;
  Clock::time_point start_;
  grpc::ClientContext context_;
  engram::v1::GenerateResponse response_;
  bool got_message_ = false;
  double last_message_s_ = 0;
  uint32_t tokens_ = 0;
  bool usage_ = false;
  uint32_t prompt_tokens_ = 0;
  uint32_t completion_tokens_ = 0;
};

BenchRunner::BenchRunner(const Connection& connection)
    : connection_(connection), stub_(engram::v1::InferenceService::NewStub(connection.channel())) {}

BenchRunner::~BenchRunner() = default;

void BenchRunner::CancelAll() {
  cancelled_ = true;
  // Copies keep the calls alive, and the lock is not held while cancelling: TryCancel may run
  // OnDone on this thread, and OnDone takes the lock.
  std::vector<std::shared_ptr<BenchCall>> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& entry : in_flight_) calls.push_back(entry.second);
  }
  cv_.notify_all();
  for (auto& c : calls) c->Cancel();
}

void BenchRunner::Finished(BenchCall* call, double end_s, bool ok) {
  std::shared_ptr<BenchCall> keep;  // released after the lock, so the call dies outside it
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = in_flight_.find(call); it != in_flight_.end()) {
      keep = std::move(it->second);
      in_flight_.erase(it);
    }
    last_end_s_ = std::max(last_end_s_, end_s);
    ++done_;
    if (!ok) ++failed_;
    // Under the lock: once it is released, Run may return and the runner be destroyed.
    cv_.notify_all();
  }
}

BenchRunner::Result BenchRunner::Run(const std::vector<engram::v1::GenerateRequest>& requests,
                                     const std::vector<uint32_t>& prompt_lens,
                                     const std::vector<double>& arrivals, int64_t max_concurrency,
                                     ProgressBar* progress) {
  Result result;
  result.records.resize(requests.size());
  done_ = 0;
  failed_ = 0;
  last_end_s_ = 0;

  std::atomic<bool> ticking{progress != nullptr};
  std::thread ticker;
  if (progress != nullptr) {
    ticker = std::thread([&] {
      while (ticking.load()) {
        progress->Update(done_.load(), failed_.load());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }

  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < requests.size(); ++i) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!arrivals.empty()) {
      const auto when = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(arrivals[i]));
      cv_.wait_until(lock, when, [&] { return cancelled_.load(); });
    }
    if (max_concurrency > 0)
      cv_.wait(lock, [&] {
        return cancelled_.load() || in_flight_.size() < static_cast<size_t>(max_concurrency);
      });
    if (cancelled_) break;
    auto call = std::make_shared<BenchCall>(
        this, &requests[i], i < prompt_lens.size() ? prompt_lens[i] : 0, &result.records[i], start);
    in_flight_.emplace(call.get(), call);
    ++result.sent;
    lock.unlock();
    call->Start(stub_.get(), connection_);
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_.empty(); });
    result.duration_s = last_end_s_;
  }
  result.records.resize(result.sent);
  if (progress != nullptr) {
    ticking = false;
    ticker.join();
    progress->Update(done_.load(), failed_.load());
  }
  return result;
}

}  // namespace engram::client
