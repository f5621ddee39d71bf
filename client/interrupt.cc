#include "client/interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "client/flags.h"

namespace engram::client {
namespace {

// Signal handlers can only reach globals.
int g_pipe[2] = {-1, -1};
std::atomic<int> g_count{0};
struct sigaction g_previous;

void OnSigint(int) {
  const int saved_errno = errno;
  if (g_count.fetch_add(1) >= 1) _exit(kExitInterrupted);
  const char c = 'i';
  [[maybe_unused]] ssize_t n = write(g_pipe[1], &c, 1);
  errno = saved_errno;
}

void InstallHandler() {
  struct sigaction sa = {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads elsewhere should not see EINTR
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace

InterruptWatcher::InterruptWatcher(std::function<void()> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  if (pipe2(g_pipe, O_CLOEXEC) != 0) {
    std::perror("engram-client: pipe");
    std::exit(kExitRpcError);
  }
  g_count = 0;
  sigaction(SIGINT, nullptr, &g_previous);
  InstallHandler();
  installed_ = true;
  thread_ = std::thread([this] { Run(); });
}

InterruptWatcher::~InterruptWatcher() {
  sigaction(SIGINT, &g_previous, nullptr);
  const char c = 'q';
  [[maybe_unused]] ssize_t n = write(g_pipe[1], &c, 1);
  thread_.join();
  close(g_pipe[0]);
  close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

void InterruptWatcher::Run() {
  for (;;) {
    char c = 0;
    ssize_t n = read(g_pipe[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == 'q') return;
    on_interrupt_();
  }
}

bool InterruptWatcher::interrupted() const { return g_count.load() > 0; }

void InterruptWatcher::Reset() { g_count = 0; }

void InterruptWatcher::Suspend() {
  if (!installed_) return;
  struct sigaction sa = {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  installed_ = false;
}

void InterruptWatcher::Resume() {
  if (installed_) return;
  InstallHandler();
  installed_ = true;
}

}  // namespace engram::client
