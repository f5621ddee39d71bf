#include "server/engine/request.h"

namespace engram {

void RequestOutput::MergeFrom(RequestOutput&& o) {
  text += o.text;
  token_ids.insert(token_ids.end(), o.token_ids.begin(), o.token_ids.end());
  for (auto& l : o.logprobs) logprobs.push_back(std::move(l));
  for (auto& g : o.gates) gates.push_back(std::move(g));
  if (o.finished()) {
    finish = o.finish;
    stop_reason = std::move(o.stop_reason);
    error = std::move(o.error);
    usage = o.usage;
  }
}

void RequestHandle::Cancel() {
  std::lock_guard<std::mutex> l(mu_);
  cancelled_ = true;
}

bool RequestHandle::cancelled() const {
  std::lock_guard<std::mutex> l(mu_);
  return cancelled_;
}

bool RequestHandle::Take(RequestOutput* out) {
  std::lock_guard<std::mutex> l(mu_);
  if (!has_pending_) return false;
  *out = std::move(pending_);
  pending_ = RequestOutput();
  has_pending_ = false;
  return true;
}

void RequestHandle::Append(RequestOutput&& o) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (has_pending_) {
      pending_.MergeFrom(std::move(o));
    } else {
      pending_ = std::move(o);
      has_pending_ = true;
    }
  }
  if (notify_) notify_();
}

}  // namespace engram
