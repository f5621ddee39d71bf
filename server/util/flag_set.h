// The parsing core shared by the per-subcommand flag parsers of engram-model and engramd
// (tools/engram_model/flags.h) and engram-client (client/flags.h). A front end registers each
// flag with a setter that validates its value and words its errors; FlagSet walks argv:
// "--name value", "--name=value", booleans as "--name" / "--name=false", "--" ends the flags,
// "--help"/"-h" stops parsing, a lone "-" is a positional (stdin, as for most Unix tools).
#pragma once

#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace engram {

class FlagSet {
 public:
  virtual ~FlagSet() = default;

  // "--name", "--name=true|false|1|0".
  void AddBool(std::string name, bool* out, std::string help);
  // Positional arguments: their names for the help text, and how many are allowed.
  void SetPositional(std::string names, size_t min_count, size_t max_count);
  // Parses argv[1..argc) (argv[0] is the subcommand name). Errors are ready to print.
  absl::Status Parse(int argc, char** argv);

  bool help() const { return help_; }
  bool IsSet(std::string_view name) const { return set_.count(std::string(name)) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }

  // An error in the front end's words ("engram-model create: ...").
  virtual absl::Status Error(std::string_view msg) const = 0;

 protected:
  struct Flag {
    std::string name;        // empty: a section title row in --help
    std::string value_name;  // "" for booleans
    std::string help;
    bool is_bool = false;
    std::function<absl::Status(std::string_view)> set;
  };
  const Flag* Find(std::string_view name) const;

  std::vector<Flag> flags_;
  std::string positional_names_;

 private:
  size_t min_positional_ = 0;
  size_t max_positional_ = 0;
  std::vector<std::string> positional_;
  std::set<std::string> set_;
  bool help_ = false;
};

}  // namespace engram
