// engram-model's (and engramd's) per-subcommand flags, over the parsing core shared with
// engram-client (server/util/flag_set.h). absl::flags is process-global, so every subcommand
// would see (and --help would list) every other subcommand's flags; this parser is built per
// subcommand and reports errors the way a user reads them:
//   engram-model create: unknown flag --foo
//   engram-model create: --hidden: expected a positive integer, got 'x'
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/util/flag_set.h"

namespace engram::tool {

class FlagParser : public FlagSet {
 public:
  // `command` is the subcommand ("create"); `synopsis` the usage line after "engram-model".
  FlagParser(std::string command, std::string synopsis, std::string description = "");

  // Integers must lie in [min, max]; the error names the range in words.
  void AddInt(std::string name, int64_t* out, std::string help, int64_t min = 1,
              int64_t max = INT64_MAX);
  // Finite and >= 0 (> 0 when `positive`).
  void AddDouble(std::string name, double* out, std::string help, bool positive = false);
  // List of integers separated by commas, each in [min, max]; "none" is the empty list when
  // `none_ok`.
  void AddIntList(std::string name, std::vector<int64_t>* out, std::string help, int64_t min = 0,
                  int64_t max = INT64_MAX, bool none_ok = false);
  // `choices` empty: any non-empty string.
  void AddString(std::string name, std::string* out, std::string help,
                 std::vector<std::string> choices = {});
  std::string Usage() const;
  const std::string& command() const { return command_; }
  // The binary the command belongs to, in messages ("engram-model"; "" for a standalone binary
  // such as engramd, whose command is its own name).
  void set_program(std::string program) { program_ = std::move(program); }
  std::string Prog() const { return program_.empty() ? command_ : program_ + " " + command_; }
  absl::Status Error(std::string_view msg) const override;

 private:
  std::string command_;
  std::string program_ = "engram-model";
  std::string synopsis_;
  std::string description_;
};

// Parses; on --help prints usage to stdout and returns 0, on error prints the message (and a
// hint) to stderr and returns 1; returns -1 when the command should run.
int ParseFlagsOrExit(FlagParser& parser, int argc, char** argv);

}  // namespace engram::tool
