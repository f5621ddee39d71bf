// Stop strings matched across token boundaries. Text reaches the client only once no stop string
// can begin inside it, so nothing at or past a stop string is ever sent: the matcher holds back
// the longest suffix of the produced text that is a proper prefix of some stop string, and
// releases it when the next text rules the match out (or at the end of the sequence).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace engram {

class StopMatcher {
 public:
  StopMatcher() = default;
  StopMatcher(std::vector<std::string> stops, bool include_stop_str);

  // Feeds new text (whole UTF-8 characters). Returns the text that is now safe to send. When a
  // stop string completes, matched() becomes true and the returned text ends right before it (or
  // right after it with include_stop_str); later calls return nothing.
  std::string Push(std::string_view text);
  // The held-back text, at the end of a sequence that did not stop on a string.
  std::string Flush();

  bool matched() const { return matched_ >= 0; }
  const std::string& matched_stop() const;

 private:
  // Bytes at the end of held_ that could still begin a stop string.
  size_t PartialSuffix() const;

  std::vector<std::string> stops_;
  bool include_ = false;
  int matched_ = -1;
  std::string held_;
};

}  // namespace engram
