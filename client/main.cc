// engram-client: the bundled client of engramd's gRPC API (proto/engram/v1/inference.proto).
// main only dispatches on the subcommand; each parses its own flags (client/flags.h), so
// `engram-client <cmd> --help` documents exactly that command.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "grpc/support/log.h"

#include "client/commands.h"
#include "client/flags.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"generate", engram::client::RunGenerate, "stream a completion of a prompt or token ids"},
    {"chat", engram::client::RunChat, "interactive chat (or one turn per line from a pipe)"},
    {"bench", engram::client::RunBench,
     "load test: TTFT, TPOT, ITL, E2E and throughput as vLLM's benchmark reports them"},
    {"tokenize", engram::client::RunTokenize,
     "token ids and pieces of a text, as the server sees it"},
    {"info", engram::client::RunInfo, "the served model: shapes, Engram tables, KV cache"},
    {"health", engram::client::RunHealth, "grpc.health.v1 check: exit 0 only when SERVING"},
};

void PrintUsage(std::FILE* out) {
  std::fputs(
      "usage: engram-client <command> [flags]   (engram-client <command> --help)\n\n"
      "Talks to engramd (default 127.0.0.1:50051; every command takes --server, --tls,\n"
      "--tls-ca, --api-key-file and --deadline).\n\ncommands:\n",
      out);
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fputs(
      "\nexit codes: 0 success, 1 the call failed (gRPC status on stderr), 2 usage error,\n"
      "130 interrupted (Ctrl-C cancels the calls in flight)\n",
      out);
}

// gRPC core logs connection failures itself ("E1122 ... Handshake failed"); every command
// already reports the call's status in one line, so the core's log stays quiet unless asked
// for with the usual GRPC_VERBOSITY / GRPC_TRACE.
void QuietLog(gpr_log_func_args*) {}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("GRPC_VERBOSITY") == nullptr && std::getenv("GRPC_TRACE") == nullptr)
    gpr_set_log_function(QuietLog);
  if (argc < 2) {
    PrintUsage(stderr);
    return engram::client::kExitUsage;
  }
  const std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    PrintUsage(stdout);
    return engram::client::kExitOk;
  }
  for (const auto& c : kCommands) {
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "engram-client: unknown command '%s'\n", argv[1]);
  PrintUsage(stderr);
  return engram::client::kExitUsage;
}
