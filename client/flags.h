// engram-client's per-subcommand flags: its flag kinds, messages and --help layout, over the
// parsing core it shares with engram-model and engramd (server/util/flag_set.h). Per subcommand
// because absl::flags is process-global: every subcommand would accept (and --help would list)
// every other subcommand's flags. Errors read as
//   engram-client bench: --request-rate: expected a number > 0 or inf, got 'x'
// and are usage errors (exit code 2), kept apart from RPC failures (exit code 1). A value may
// start with '-' ("--presence-penalty -1").
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/util/flag_set.h"

namespace engram::client {

// Process exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRpcError = 1;  // the server answered with an error, or none answered
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;  // 128 + SIGINT, what a shell reports for Ctrl-C

// "N" (fixed) or "A,B" (Uniform(A, B), inclusive).
struct IntRange {
  int64_t min = 0;
  int64_t max = 0;
  bool fixed() const { return min == max; }
};

class FlagParser : public FlagSet {
 public:
  // `command` is the subcommand ("bench"); `synopsis` the usage line after "engram-client".
  FlagParser(std::string command, std::string synopsis, std::string description = "");

  // Starts a titled group in --help; flags added later are listed under it.
  void AddSection(std::string title);
  // Integers must lie in [min, max]; the error names the range in words.
  void AddInt(std::string name, int64_t* out, std::string help, int64_t min = 1,
              int64_t max = std::numeric_limits<int64_t>::max());
  // A number in [min, max] ((min, max] when `min_exclusive`); infinity is accepted ("inf") only
  // when max is infinite.
  void AddDouble(std::string name, double* out, std::string help, double min, double max,
                 bool min_exclusive = false);
  // "N" or "A,B" with min <= A <= B <= max.
  void AddRange(std::string name, IntRange* out, std::string help, int64_t min = 1,
                int64_t max = std::numeric_limits<int64_t>::max());
  // Comma-separated integers, each in [min, max].
  void AddIntList(std::string name, std::vector<int64_t>* out, std::string help, int64_t min,
                  int64_t max);
  // Any non-empty string; `value_name` names it in --help ("FILE", "HOST:PORT").
  void AddString(std::string name, std::string* out, std::string help,
                 std::string value_name = "S");
  // One of `choices`.
  void AddChoice(std::string name, std::string* out, std::string help,
                 std::vector<std::string> choices);
  // Repeatable: every occurrence appends (an empty string included).
  void AddStringList(std::string name, std::vector<std::string>* out, std::string help);
  std::string Usage() const;
  const std::string& command() const { return command_; }
  // An error in the parser's words, for checks across flags done after Parse.
  absl::Status Error(std::string_view msg) const override;

 private:
  std::string command_;
  std::string synopsis_;
  std::string description_;
};

// Parses; on --help prints usage to stdout and returns kExitOk, on error prints the message
// (and a hint) to stderr and returns kExitUsage; returns -1 when the command should run.
int ParseFlagsOrExit(FlagParser& parser, int argc, char** argv);

// Prints a usage error found after parsing (a conflict between flags) and returns kExitUsage.
int UsageError(const FlagParser& parser, std::string_view msg);
// The same for a setup error (an unreadable --tls-ca or --dataset file): its message.
int UsageError(const FlagParser& parser, const absl::Status& status);

}  // namespace engram::client
