// A real engramd for integration tests: a child process on free loopback ports, its stderr in a
// file, ready once grpc.health.v1 says SERVING, and killed and reaped on destruction so that no
// server outlives its test, whatever the test did. The child also dies with the thread that
// started it (PR_SET_PDEATHSIG), which covers a test binary that crashes or that ctest kills on
// its timeout; start servers from the test's main thread (TEST bodies and SetUpTestSuite run
// there), not from a thread that ends before the server should.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engram/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace engram::itest {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using HealthStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

// Timeouts are generous: the suite must pass on a loaded 2-core machine, and every wait polls,
// so a fast machine never sleeps them out.
inline constexpr seconds kStartTimeout{60};
inline constexpr seconds kWaitTimeout{20};

// Calls `done` every 10 ms until it returns true (true) or `timeout` passes (false).
template <class F>
bool PollUntil(F&& done, Clock::duration timeout) {
  const auto end = Clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// A port the kernel considers free on 127.0.0.1 now. Another process can take it before the
// server binds it; EngramdProcess::Start retries with new ports when the bind fails.
inline int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// Whether something accepts TCP connections on 127.0.0.1:port.
inline bool PortAccepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// The body of GET http://127.0.0.1:port/path, or "" when the server does not answer 200.
// HTTP/1.0, so the server closes the connection when done and no chunking is involved.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{10, 0};  // a wedged server fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[16384];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") > response.find("\r\n") ||
      header_end == std::string::npos)
    return "";
  return response.substr(header_end + 4);
}

// The value of the Prometheus sample whose name-and-labels part is exactly `series`.
inline std::optional<double> MetricValue(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string Describe(const grpc::Status& s) {
  return std::to_string(static_cast<int>(s.error_code())) + " '" + s.error_message() + "'";
}

class EngramdProcess {
 public:
  struct Options {
    std::string binary;             // engramd
    std::string model_dir;          // --model
    std::string log_path;           // stderr and stdout of the server
    std::vector<std::string> args;  // more flags
    // Small defaults so parallel tests stay light: one compute thread, and a KV cache sized for
    // the tests (the default 1 GiB would be allocated up front by each server).
    int threads = 1;
    std::string kv_cache_bytes = "64M";
    int grpc_port = 0;  // 0: a free one
  };

  // Starts engramd and waits until health reports SERVING. On failure returns null and says why
  // (with the server's log) in *error.
  static std::unique_ptr<EngramdProcess> Start(const Options& o, std::string* error) {
    for (int attempt = 0; attempt < 4; ++attempt) {
      std::unique_ptr<EngramdProcess> p(new EngramdProcess(o));
      const std::string why = p->Launch();
      if (why.empty()) return p;
      *error = why;
      // Only a lost race for a port the helper picked is worth another try.
      if (o.grpc_port != 0 || (why.find("cannot bind") == std::string::npos &&
                               why.find("--metrics-port") == std::string::npos))
        break;
    }
    return nullptr;
  }

  EngramdProcess(const EngramdProcess&) = delete;
  EngramdProcess& operator=(const EngramdProcess&) = delete;

  ~EngramdProcess() {
    if (pid_ > 0 && !exit_status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    // A failed test is much easier to read with the server's side of the story.
    if (::testing::Test::HasFailure()) {
      std::string log = Log();
      if (log.size() > 6000) log = "...\n" + log.substr(log.size() - 6000);
      std::fprintf(stderr, "---- engramd log (%s) ----\n%s---- end of engramd log ----\n",
                   o_.log_path.c_str(), log.c_str());
    }
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return o_.log_path; }

  // A new channel with a connection of its own: by default channels to one address share a
  // subchannel, so one that failed to connect would hold every later one in its reconnect
  // backoff (seconds), and a call that must reach the server would fail fast with UNAVAILABLE.
  std::shared_ptr<grpc::Channel> NewChannel() const {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
    return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
  }
  std::unique_ptr<v1::InferenceService::Stub> NewStub() const {
    return v1::InferenceService::NewStub(NewChannel());
  }

  // grpc.health.v1.Health/Check for `service` ("" is the whole server), on a connection of its
  // own that closes when the call is done: engramd's exit after a drain waits for its clients'
  // connections to close, and an idle C++ channel only notices the server's GOAWAY on its 5 s
  // backup poll, so a health channel kept open would add seconds to every drain test.
  grpc::Status CheckHealth(const std::string& service, HealthStatus* status) const {
    auto health = grpc::health::v1::Health::NewStub(NewChannel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&ctx, req, &resp);
    *status = resp.status();
    return s;
  }
  bool WaitHealth(HealthStatus want, Clock::duration timeout = kWaitTimeout) const {
    return PollUntil(
        [&] {
          HealthStatus got;
          return CheckHealth("", &got).ok() && got == want;
        },
        timeout);
  }

  void Signal(int sig) const { ::kill(pid_, sig); }

  // The wait status once the process has exited within `timeout`, else nullopt.
  std::optional<int> WaitExit(Clock::duration timeout) {
    PollUntil([&] { return Reap(); }, timeout);
    return exit_status_;
  }
  bool Exited() { return Reap(); }

  std::string Log() const { return ReadWholeFile(o_.log_path); }
  bool WaitLog(const std::string& needle, Clock::duration timeout = kWaitTimeout) const {
    return PollUntil([&] { return Log().find(needle) != std::string::npos; }, timeout);
  }

  // The /metrics text, or "" when the exposer does not answer.
  std::string Metrics() const { return HttpGet(metrics_port_, "/metrics"); }
  // The exposition name of a series: every engram: series carries the model_name label.
  std::string Series(const std::string& name, const std::string& labels = "") const {
    return name + "{model_name=\"" + model_name_ + "\"" + (labels.empty() ? "" : "," + labels) +
           "}";
  }
  std::optional<double> Metric(const std::string& name, const std::string& labels = "") const {
    return MetricValue(Metrics(), Series(name, labels));
  }

 private:
  explicit EngramdProcess(Options o) : o_(std::move(o)) {
    const size_t slash = o_.model_dir.find_last_of('/');
    model_name_ = slash == std::string::npos ? o_.model_dir : o_.model_dir.substr(slash + 1);
  }

  bool Reap() {
    if (exit_status_) return true;
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) exit_status_ = st;
    return exit_status_.has_value();
  }

  // "" once the server is SERVING, else what went wrong.
  std::string Launch() {
    grpc_port_ = o_.grpc_port != 0 ? o_.grpc_port : FreeLoopbackPort();
    do metrics_port_ = FreeLoopbackPort();
    while (metrics_port_ == grpc_port_);
    if (grpc_port_ == 0 || metrics_port_ == 0) return "no free loopback port";
    std::vector<std::string> args = {o_.binary,
                                     "--model",
                                     o_.model_dir,
                                     "--listen",
                                     address(),
                                     "--metrics-port",
                                     std::to_string(metrics_port_),
                                     "--threads",
                                     std::to_string(o_.threads),
                                     "--kv-cache-bytes",
                                     o_.kv_cache_bytes};
    args.insert(args.end(), o_.args.begin(), o_.args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    const int log_fd = ::open(o_.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) return "cannot create " + o_.log_path + ": " + std::strerror(errno);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();
    // fork + exec rather than posix_spawn: the child must set its parent-death signal. Only
    // async-signal-safe calls between fork and exec (the test process has threads).
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
      ::dup2(null_fd, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    pid_ = pid;

    // Plain TCP first: a gRPC channel that tried before the port was open would sit out a
    // reconnect backoff.
    PollUntil([&] { return Reap() || PortAccepts(grpc_port_); }, kStartTimeout);
    // engramd's gRPC port allows SO_REUSEPORT (gRPC's default), so an answer on it may come from
    // another server that holds the same port; the log line says that ours is the one serving.
    bool serving = false;
    PollUntil(
        [&] {
          if (Reap()) return true;
          HealthStatus st;
          serving = CheckHealth("", &st).ok() &&
                    st == grpc::health::v1::HealthCheckResponse::SERVING &&
                    Log().find("engramd: serving ") != std::string::npos;
          return serving;
        },
        kStartTimeout);
    if (serving) return "";
    std::string why =
        exit_status_
            ? "engramd exited during start-up (wait status " + std::to_string(*exit_status_) + ")"
            : "engramd was not SERVING after " + std::to_string(kStartTimeout.count()) + " s";
    return why + "; log:\n" + Log();
  }

  Options o_;
  std::string model_name_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::optional<int> exit_status_;
};

}  // namespace engram::itest
