#include "server/engine/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace engram {
namespace {

// A cut must not split a UTF-8 character: the released text has to be valid on its own.
size_t BackToCharStart(std::string_view s, size_t pos) {
  while (pos > 0 && pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

}  // namespace

StopMatcher::StopMatcher(std::vector<std::string> stops, bool include_stop_str)
    : stops_(std::move(stops)), include_(include_stop_str) {}

const std::string& StopMatcher::matched_stop() const {
  static const std::string kNone;
  return matched_ >= 0 ? stops_[static_cast<size_t>(matched_)] : kNone;
}

size_t StopMatcher::PartialSuffix() const {
  size_t best = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > best; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(s).substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

std::string StopMatcher::Push(std::string_view text) {
  if (matched() || text.empty()) return {};
  const size_t old_size = held_.size();
  held_.append(text);
  if (stops_.empty()) return std::exchange(held_, {});
  // The earliest stop string that ends inside the new text wins; one ending entirely inside the
  // old held-back text cannot exist (it would have matched on an earlier call).
  size_t best_pos = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const std::string& s = stops_[i];
    const size_t from = old_size >= s.size() ? old_size - s.size() + 1 : 0;
    const size_t pos = held_.find(s, from);
    if (pos != std::string::npos && pos < best_pos) {
      best_pos = pos;
      matched_ = static_cast<int>(i);
    }
  }
  if (matched()) {
    const size_t end = best_pos + (include_ ? matched_stop().size() : 0);
    std::string out = held_.substr(0, end);
    held_.clear();
    return out;
  }
  const size_t keep_from = BackToCharStart(held_, held_.size() - PartialSuffix());
  std::string out = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return out;
}

std::string StopMatcher::Flush() { return matched() ? std::string() : std::exchange(held_, {}); }

}  // namespace engram
