// Ctrl-C while calls are in flight: cancel them (ClientContext::TryCancel, so the server frees
// the sequences) and let the command finish its own way, instead of dying mid-stream.
// TryCancel takes locks, so it cannot run in a signal handler: the handler only sets a flag and
// writes a byte to a pipe, and a thread reading that pipe runs the callback. A second Ctrl-C
// before the command has wound down exits at once with 130, in case the cancellation hangs.
#pragma once

#include <functional>
#include <mutex>
#include <thread>

#include "grpcpp/client_context.h"

namespace engram::client {

class InterruptWatcher {
 public:
  // Installs the SIGINT handler. At most one watcher exists at a time.
  explicit InterruptWatcher(std::function<void()> on_interrupt);
  ~InterruptWatcher();  // restores the previous SIGINT disposition
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  // True once Ctrl-C was pressed since construction or the last Reset.
  bool interrupted() const;
  void Reset();
  // Gives SIGINT its default disposition back while no call is in flight (chat's prompt, where
  // libedit restores the terminal before the default action ends the process), and takes it
  // again.
  void Suspend();
  void Resume();

 private:
  void Run();
  std::function<void()> on_interrupt_;
  std::thread thread_;
  bool installed_ = false;
};

// The call a Ctrl-C should cancel, for commands with one call in flight at a time (generate,
// chat): set while the call runs, cleared before its context goes away.
class CancelSlot {
 public:
  void Set(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = context;
  }
  void Clear() { Set(nullptr); }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    if (context_ != nullptr) context_->TryCancel();
  }

 private:
  std::mutex mu_;
  grpc::ClientContext* context_ = nullptr;
};

}  // namespace engram::client
