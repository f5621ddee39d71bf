// engram-model: create, inspect and run Engram model directories (docs/model-format.md).
// main only dispatches on the subcommand; every subcommand parses its own flags
// (tools/engram_model/flags.h), so `engram-model <cmd> --help` documents exactly that command.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "tools/engram_model/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"create", engram::tool::RunCreate,
     "generate a model directory (random weights, BPE tokenizer)"},
    {"info", engram::tool::RunInfo,
     "summarise a model directory: shapes, parameters, tables, FLOPs"},
    {"verify", engram::tool::RunVerify,
     "validate a model directory completely; prints OK or one error"},
    {"hash", engram::tool::RunHash, "Engram row ids of a text, per layer, n-gram and head"},
    {"forward", engram::tool::RunForward, "run the forward pass on a prompt and print logits"},
    {"gates", engram::tool::RunGates, "print the Engram gate values per token"},
    {"generate", engram::tool::RunGenerate, "generate a continuation of a prompt"},
    {"bench", engram::tool::RunBench,
     "offline throughput: dense baseline vs Engram from RAM / SSD, prefetch on and off"},
};

void PrintUsage(std::FILE* out) {
  std::fputs(
      "usage: engram-model <command> [flags]   (engram-model <command> --help)\n\ncommands:\n",
      out);
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return 1;
  }
  const std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    PrintUsage(stdout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "engram-model: unknown command '%s'\n", argv[1]);
  PrintUsage(stderr);
  return 1;
}
