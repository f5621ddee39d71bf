#include "client/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "server/util/str_cat.h"

namespace engram::client {
namespace {

size_t TerminalColumns() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace

bool StderrIsTty() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, size_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()) {}

std::string ProgressBar::Render(std::string_view label, size_t done, size_t failed, size_t total,
                                double elapsed_s, size_t width) {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1fs", elapsed_s);
  std::string tail = StrCat("  ", done, "/", total);
  if (failed > 0) absl::StrAppend(&tail, "  failed ", failed);
  absl::StrAppend(&tail, "  ", secs);
  const std::string head = StrCat(label, " [");
  // The bar takes what the text leaves, between 10 and 40 columns.
  const size_t fixed = head.size() + 1 + tail.size();
  const size_t bar = width > fixed + 10 ? std::min<size_t>(40, width - fixed) : 10;
  const size_t filled = total == 0 ? bar : std::min(bar, done * bar / total);
  std::string line =
      StrCat(head, std::string(filled, '#'), std::string(bar - filled, '.'), "]", tail);
  if (line.size() > width) line.resize(width);
  return line;
}

void ProgressBar::Update(size_t done, size_t failed) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // One column short of the width: writing the last column makes some terminals wrap.
  const std::string line =
      Render(label_, done, failed, total_, elapsed, std::max<size_t>(TerminalColumns(), 20) - 1);
  std::fprintf(stderr, "\r%s\033[K", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (!enabled_ || !drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace engram::client
