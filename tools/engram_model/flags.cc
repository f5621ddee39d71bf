// Implementation of the per-subcommand flag parser (see flags.h for why it exists).
#include "tools/engram_model/flags.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/util/str_cat.h"

namespace engram::tool {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string RangeWords(int64_t min, int64_t max) {
  if (max == INT64_MAX) {
    if (min == 1) return "a positive integer";
    if (min == 0) return "a non-negative integer";
    return StrCat("an integer >= ", min);
  }
  return StrCat("an integer in [", min, ", ", max, "]");
}

}  // namespace

FlagParser::FlagParser(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)) {}

absl::Status FlagParser::Error(std::string_view msg) const {
  return absl::InvalidArgumentError(StrCat(Prog(), ": ", msg));
}

void FlagParser::AddInt(std::string name, int64_t* out, std::string help, int64_t min,
                        int64_t max) {
  const std::string flag = name;
  flags_.push_back(
      {std::move(name), "N", std::move(help), false,
       [this, out, min, max, flag](std::string_view v) {
         int64_t x = 0;
         // Not a number: say what kind of number; out of range: say the range.
         if (!absl::SimpleAtoi(AV(v), &x))
           return Error(StrCat("--", flag, ": expected ",
                               RangeWords(min, min <= 1 ? INT64_MAX : max), ", got '", v, "'"));
         if (x < min || x > max)
           return Error(StrCat("--", flag, ": expected ", RangeWords(min, max), ", got '", v, "'"));
         *out = x;
         return absl::OkStatus();
       }});
}

void FlagParser::AddDouble(std::string name, double* out, std::string help, bool positive) {
  const std::string flag = name;
  flags_.push_back(
      {std::move(name), "X", std::move(help), false,
       [this, out, flag, positive](std::string_view v) {
         double x = 0;
         if (!absl::SimpleAtod(AV(v), &x) || !std::isfinite(x) || x < 0 || (positive && x == 0))
           return Error(StrCat("--", flag, ": expected a ", positive ? "positive" : "non-negative",
                               " number, got '", v, "'"));
         *out = x;
         return absl::OkStatus();
       }});
}

void FlagParser::AddIntList(std::string name, std::vector<int64_t>* out, std::string help,
                            int64_t min, int64_t max, bool none_ok) {
  const std::string flag = name;
  flags_.push_back({std::move(name), "A,B,...", std::move(help), false,
                    [this, out, min, max, flag, none_ok](std::string_view v) {
                      std::vector<int64_t> xs;
                      if (none_ok && v == "none") {
                        out->clear();
                        return absl::OkStatus();
                      }
                      for (absl::string_view part : absl::StrSplit(AV(v), ',')) {
                        int64_t x = 0;
                        if (!absl::SimpleAtoi(part, &x) || x < min || x > max)
                          return Error(StrCat("--", flag, ": expected a comma-separated list of ",
                                              RangeWords(min, max), "s, got '", v, "'"));
                        xs.push_back(x);
                      }
                      *out = std::move(xs);
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddString(std::string name, std::string* out, std::string help,
                           std::vector<std::string> choices) {
  const std::string flag = name;
  const std::string value_name = choices.empty() ? "S" : absl::StrJoin(choices, "|");
  flags_.push_back({std::move(name), value_name, std::move(help), false,
                    [this, out, flag, choices](std::string_view v) {
                      if (v.empty()) return Error(StrCat("--", flag, ": expected a value, got ''"));
                      if (!choices.empty() &&
                          std::find(choices.begin(), choices.end(), v) == choices.end())
                        return Error(StrCat("--", flag, ": expected one of ",
                                            absl::StrJoin(choices, ", "), ", got '", v, "'"));
                      *out = std::string(v);
                      return absl::OkStatus();
                    }});
}

std::string FlagParser::Usage() const {
  // Synopses are written with or without the command in front; print it once.
  const bool named = synopsis_.rfind(command_ + " ", 0) == 0 || synopsis_ == command_;
  std::string out = StrCat("usage: ", program_.empty() ? "" : program_ + " ",
                           named ? "" : command_ + " ", synopsis_, "\n");
  if (!description_.empty()) absl::StrAppend(&out, "\n", description_, "\n");
  if (!flags_.empty()) absl::StrAppend(&out, "\nflags:\n");
  for (const auto& f : flags_) {
    std::string left = StrCat("  --", f.name);
    if (!f.is_bool) absl::StrAppend(&left, " ", f.value_name);
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      absl::StrAppend(&left, "\n", std::string(30, ' '));
    absl::StrAppend(&out, left, f.help, "\n");
  }
  absl::StrAppend(&out, "  --help                      this text\n");
  return out;
}

int ParseFlagsOrExit(FlagParser& parser, int argc, char** argv) {
  absl::Status st = parser.Parse(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n(see %s --help)\n", std::string(st.message()).c_str(),
                 parser.Prog().c_str());
    return 1;
  }
  if (parser.help()) {
    std::fputs(parser.Usage().c_str(), stdout);
    return 0;
  }
  return -1;
}

}  // namespace engram::tool
