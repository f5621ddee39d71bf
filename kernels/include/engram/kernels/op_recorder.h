// Step graphs for backends that run ops on the calling thread (the CPU, and test doubles built
// on it): a graph is the list of the recorded ops as closures over their arguments, replayed in
// order. Each op starts with `if (recorder_.Defer([=, this] { Op(args...); })) return;`: while
// recording, the closure (which copies the arguments, params structs included, as a kernel
// launch captures its parameters) is stored; on replay, recording is off and the op runs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engram/kernels/backend.h"
#include "engram/kernels/check.h"

namespace engram {

class OpRecorder {
 public:
  bool recording() const { return ops_ != nullptr; }
  void Begin() {
    ENGRAM_CHECK_MSG(!recording(), "BeginGraph while already recording");
    ops_ = std::make_unique<Graph>();
  }
  // True when `op` was recorded (the caller returns); false when the caller runs the op now.
  template <typename F>
  bool Defer(F&& op) {
    if (!recording()) return false;
    ops_->ops.emplace_back(std::forward<F>(op));
    return true;
  }
  std::unique_ptr<BackendGraph> End() {
    ENGRAM_CHECK_MSG(recording(), "EndGraph without BeginGraph");
    return std::move(ops_);
  }
  static void Launch(const BackendGraph& graph) {
    for (const auto& op : dynamic_cast<const Graph&>(graph).ops) op();
  }
  // For memory calls, which a graph cannot hold.
  void CheckNotRecording(const char* call) const {
    ENGRAM_CHECK_MSG(!recording(), "%s while recording a step graph", call);
  }

 private:
  struct Graph final : BackendGraph {
    std::vector<std::function<void()>> ops;
  };
  std::unique_ptr<Graph> ops_;
};

}  // namespace engram
