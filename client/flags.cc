// Implementation of engram-client's per-subcommand flag parser (see flags.h for why it exists).
#include "client/flags.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/util/str_cat.h"

namespace engram::client {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string IntWords(int64_t min, int64_t max) {
  if (max == std::numeric_limits<int64_t>::max()) {
    if (min == 1) return "a positive integer";
    if (min == 0) return "a non-negative integer";
    return StrCat("an integer >= ", min);
  }
  return StrCat("an integer in [", min, ", ", max, "]");
}

std::string DoubleWords(double min, double max, bool min_exclusive) {
  if (std::isinf(max)) return StrCat("a number ", min_exclusive ? "> " : ">= ", min, " or inf");
  return StrCat("a number in ", min_exclusive ? "(" : "[", min, ", ", max, "]");
}

bool ParseInt(std::string_view s, int64_t* out) { return absl::SimpleAtoi(AV(s), out); }

// --help: flag names in the first 30 columns, their help wrapped at word boundaries to 100.
constexpr size_t kHelpColumn = 30;
constexpr size_t kHelpWidth = 100 - kHelpColumn;

std::string Wrap(std::string_view text) {
  std::string out;
  size_t column = 0;
  for (absl::string_view word : absl::StrSplit(AV(text), ' ', absl::SkipEmpty())) {
    if (column > 0 && column + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(&out, "\n", std::string(kHelpColumn, ' '));
      column = 0;
    } else if (column > 0) {
      out.push_back(' ');
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

}  // namespace

FlagParser::FlagParser(std::string command, std::string synopsis, std::string description)
    : command_(std::move(command)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)) {}

absl::Status FlagParser::Error(std::string_view msg) const {
  return absl::InvalidArgumentError(StrCat("engram-client ", command_, ": ", msg));
}

void FlagParser::AddSection(std::string title) {
  flags_.push_back({"", "", std::move(title), false, nullptr});
}

void FlagParser::AddInt(std::string name, int64_t* out, std::string help, int64_t min,
                        int64_t max) {
  const std::string flag = name;
  flags_.push_back(
      {std::move(name), "N", std::move(help), false,
       [this, out, min, max, flag](std::string_view v) {
         int64_t x = 0;
         if (!ParseInt(v, &x) || x < min || x > max)
           return Error(StrCat("--", flag, ": expected ", IntWords(min, max), ", got '", v, "'"));
         *out = x;
         return absl::OkStatus();
       }});
}

void FlagParser::AddDouble(std::string name, double* out, std::string help, double min, double max,
                           bool min_exclusive) {
  const std::string flag = name;
  flags_.push_back({std::move(name), "X", std::move(help), false,
                    [this, out, min, max, min_exclusive, flag](std::string_view v) {
                      double x = 0;
                      const bool ok = absl::SimpleAtod(AV(v), &x) && !std::isnan(x) &&
                                      (std::isfinite(x) || (std::isinf(max) && x > 0)) &&
                                      (min_exclusive ? x > min : x >= min) && x <= max;
                      if (!ok)
                        return Error(StrCat("--", flag, ": expected ",
                                            DoubleWords(min, max, min_exclusive), ", got '", v,
                                            "'"));
                      *out = x;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddRange(std::string name, IntRange* out, std::string help, int64_t min,
                          int64_t max) {
  const std::string flag = name;
  flags_.push_back({std::move(name), "N|A,B", std::move(help), false,
                    [this, out, min, max, flag](std::string_view v) {
                      std::vector<std::string> parts = absl::StrSplit(AV(v), ',');
                      IntRange r;
                      bool ok = parts.size() == 1 || parts.size() == 2;
                      ok = ok && ParseInt(parts.front(), &r.min) && ParseInt(parts.back(), &r.max);
                      if (!ok || r.min < min || r.max > max || r.min > r.max)
                        return Error(StrCat("--", flag, ": expected N or A,B (A <= B), each ",
                                            IntWords(min, max), ", got '", v, "'"));
                      *out = r;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddIntList(std::string name, std::vector<int64_t>* out, std::string help,
                            int64_t min, int64_t max) {
  const std::string flag = name;
  flags_.push_back({std::move(name), "A,B,...", std::move(help), false,
                    [this, out, min, max, flag](std::string_view v) {
                      std::vector<int64_t> xs;
                      for (absl::string_view part : absl::StrSplit(AV(v), ',')) {
                        int64_t x = 0;
                        if (!absl::SimpleAtoi(part, &x) || x < min || x > max)
                          return Error(StrCat("--", flag, ": expected a comma-separated list of ",
                                              IntWords(min, max), "s, got '", v, "'"));
                        xs.push_back(x);
                      }
                      *out = std::move(xs);
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddString(std::string name, std::string* out, std::string help,
                           std::string value_name) {
  const std::string flag = name;
  flags_.push_back({std::move(name), std::move(value_name), std::move(help), false,
                    [this, out, flag](std::string_view v) {
                      if (v.empty()) return Error(StrCat("--", flag, ": expected a value, got ''"));
                      *out = std::string(v);
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddChoice(std::string name, std::string* out, std::string help,
                           std::vector<std::string> choices) {
  const std::string flag = name;
  const std::string value_name = absl::StrJoin(choices, "|");
  flags_.push_back({std::move(name), value_name, std::move(help), false,
                    [this, out, flag, choices](std::string_view v) {
                      if (std::find(choices.begin(), choices.end(), v) == choices.end())
                        return Error(StrCat("--", flag, ": expected one of ",
                                            absl::StrJoin(choices, ", "), ", got '", v, "'"));
                      *out = std::string(v);
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddStringList(std::string name, std::vector<std::string>* out, std::string help) {
  flags_.push_back({std::move(name), "S", std::move(help), false, [out](std::string_view v) {
                      out->emplace_back(v);
                      return absl::OkStatus();
                    }});
}

std::string FlagParser::Usage() const {
  std::string out = StrCat("usage: engram-client ", command_, " ", synopsis_, "\n");
  if (!description_.empty()) absl::StrAppend(&out, "\n", description_, "\n");
  if (!flags_.empty() && !flags_.front().name.empty()) absl::StrAppend(&out, "\nflags:\n");
  for (const auto& f : flags_) {
    if (f.name.empty()) {
      absl::StrAppend(&out, "\n", f.help, ":\n");
      continue;
    }
    std::string left = StrCat("  --", f.name);
    if (!f.is_bool) absl::StrAppend(&left, " ", f.value_name);
    if (left.size() < kHelpColumn)
      left.resize(kHelpColumn, ' ');
    else
      absl::StrAppend(&left, "\n", std::string(kHelpColumn, ' '));
    absl::StrAppend(&out, left, Wrap(f.help), "\n");
  }
  absl::StrAppend(&out, flags_.empty() ? "\nflags:\n" : "\n",
                  "  --help                      this text\n");
  return out;
}

int ParseFlagsOrExit(FlagParser& parser, int argc, char** argv) {
  absl::Status st = parser.Parse(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n(see engram-client %s --help)\n", std::string(st.message()).c_str(),
                 parser.command().c_str());
    return kExitUsage;
  }
  if (parser.help()) {
    std::fputs(parser.Usage().c_str(), stdout);
    return kExitOk;
  }
  return -1;
}

int UsageError(const FlagParser& parser, std::string_view msg) {
  std::fprintf(stderr, "%s\n(see engram-client %s --help)\n",
               std::string(parser.Error(msg).message()).c_str(), parser.command().c_str());
  return kExitUsage;
}

int UsageError(const FlagParser& parser, const absl::Status& status) {
  const absl::string_view m = status.message();
  return UsageError(parser, std::string_view(m.data(), m.size()));
}

}  // namespace engram::client
