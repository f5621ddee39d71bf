#include "server/util/flag_set.h"

#include "server/util/str_cat.h"

namespace engram {

void FlagSet::AddBool(std::string name, bool* out, std::string help) {
  const std::string flag = name;
  flags_.push_back(
      {std::move(name), "", std::move(help), true, [this, out, flag](std::string_view v) {
         if (v == "true" || v == "1") {
           *out = true;
         } else if (v == "false" || v == "0") {
           *out = false;
         } else {
           return Error(StrCat("--", flag, ": expected true or false, got '", v, "'"));
         }
         return absl::OkStatus();
       }});
}

void FlagSet::SetPositional(std::string names, size_t min_count, size_t max_count) {
  positional_names_ = std::move(names);
  min_positional_ = min_count;
  max_positional_ = max_count;
}

const FlagSet::Flag* FlagSet::Find(std::string_view name) const {
  for (const auto& f : flags_)
    if (!f.name.empty() && f.name == name) return &f;
  return nullptr;
}

absl::Status FlagSet::Parse(int argc, char** argv) {
  bool only_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (only_positional || arg.size() < 2 || arg[0] != '-') {
      positional_.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      return absl::OkStatus();
    }
    if (arg.substr(0, 2) != "--") return Error(StrCat("unknown flag ", arg));
    std::string_view body = arg.substr(2);
    std::string_view name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    const Flag* f = Find(name);
    if (f == nullptr) return Error(StrCat("unknown flag --", name));
    if (!has_value) {
      if (f->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return Error(StrCat("--", name, ": missing value"));
      }
    }
    if (auto st = f->set(value); !st.ok()) return st;
    set_.insert(std::string(name));
  }
  if (positional_.size() < min_positional_)
    return Error(StrCat("missing argument ", positional_names_));
  if (positional_.size() > max_positional_)
    return Error(StrCat("unexpected argument '", positional_[max_positional_], "'"));
  return absl::OkStatus();
}

}  // namespace engram
