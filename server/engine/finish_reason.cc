#include "server/engine/engine_observer.h"

namespace engram {

// vLLM reports "stop" for both EOS and stop strings and "abort" for cancellations; we keep EOS
// apart from stop strings because a user tuning stop strings wants to tell them apart.
std::string_view FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
    case FinishReason::kNone:
      break;
  }
  return "none";
}

}  // namespace engram
