// The bench progress bar, on stderr and only when stderr is a terminal, so a redirected or
// captured run (CI, `2> log`) gets no carriage-return noise and stdout stays the report alone.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace engram::client {

bool StderrIsTty();

class ProgressBar {
 public:
  // `enabled` false: every call is a no-op (normally StderrIsTty()).
  ProgressBar(std::string label, size_t total, bool enabled);
  // Redraws the line in place; cheap enough to call from a 10 Hz ticker.
  void Update(size_t done, size_t failed);
  // Erases the bar so the report that follows starts on a clean line.
  void Finish();

  // The line, at most `width` columns: "label [#####.....]  12/100  failed 1  3.4s".
  static std::string Render(std::string_view label, size_t done, size_t failed, size_t total,
                            double elapsed_s, size_t width);

 private:
  std::string label_;
  size_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace engram::client
