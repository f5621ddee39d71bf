// Split and ByteLevel pre-tokenizers, following HF tokenizers' NormalizedString::split and
// pre_tokenizers/byte_level.rs step for step (see pre_tokenizer.h for why it matters).
#include "server/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "server/tokenizer/byte_level.h"
#include "server/util/str_cat.h"

namespace engram {

using tokenizer_internal::Abbrev;
using tokenizer_internal::FieldError;
using tokenizer_internal::FindField;
using tokenizer_internal::GetBool;
using tokenizer_internal::GetPattern;
using tokenizer_internal::GetString;
using tokenizer_internal::IndexPath;
using tokenizer_internal::JoinPath;
using tokenizer_internal::Json;

namespace {

struct Piece {
  size_t begin;
  size_t end;
  bool flag;  // before grouping: "is a match"; after: "remove"
};

const std::shared_ptr<const Regex>& Gpt2Regex() {
  static const auto* re = new std::shared_ptr<const Regex>(*Regex::Compile(kGpt2SplitPattern));
  return *re;
}

}  // namespace

void SplitWithPattern(std::string_view text, const Regex& pattern, SplitBehavior behavior,
                      bool invert, std::vector<std::string>* out) {
  // The matches and the gaps between them, in order, covering all of `text`.
  std::vector<Piece> pieces;
  if (text.empty()) {
    pieces.push_back({0, 0, false});
  } else {
    std::vector<std::pair<size_t, size_t>> matches;
    pattern.FindAll(text, &matches);
    size_t prev = 0;
    for (const auto& [begin, end] : matches) {
      if (prev != begin) pieces.push_back({prev, begin, false});
      pieces.push_back({begin, end, true});
      prev = end;
    }
    if (prev != text.size()) pieces.push_back({prev, text.size(), false});
  }
  if (invert) {
    for (Piece& p : pieces) p.flag = !p.flag;
  }

  std::vector<Piece> grouped;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      grouped = std::move(pieces);
      break;
    case SplitBehavior::kIsolated:
      grouped = std::move(pieces);
      for (Piece& p : grouped) p.flag = false;
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.flag && !previous_match && !grouped.empty()) {
          grouped.back().end = p.end;
        } else {
          grouped.push_back({p.begin, p.end, false});
        }
        previous_match = p.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->flag && !previous_match && !grouped.empty()) {
          grouped.back().begin = it->begin;
        } else {
          grouped.push_back({it->begin, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(grouped.begin(), grouped.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Piece& p : pieces) {
        if (p.flag == previous_match && !grouped.empty()) {
          grouped.back().end = p.end;
        } else {
          grouped.push_back({p.begin, p.end, false});
        }
        previous_match = p.flag;
      }
      break;
    }
  }
  for (const Piece& p : grouped) {
    if (!p.flag && p.begin != p.end) out->emplace_back(text.substr(p.begin, p.end - p.begin));
  }
}

PreTokenizer& PreTokenizer::AddSplit(std::shared_ptr<const Regex> pattern, SplitBehavior behavior,
                                     bool invert) {
  Step step;
  step.kind = Step::kSplit;
  step.pattern = std::move(pattern);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
  return *this;
}

PreTokenizer& PreTokenizer::AddByteLevel(bool add_prefix_space,
                                         std::shared_ptr<const Regex> split_regex) {
  Step step;
  step.kind = Step::kByteLevel;
  step.pattern = std::move(split_regex);
  step.add_prefix_space = add_prefix_space;
  steps_.push_back(std::move(step));
  return *this;
}

void PreTokenizer::Split(std::string_view text, std::vector<std::string>* out) const {
  std::vector<std::string> current;
  current.emplace_back(text);
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    for (const std::string& piece : current) {
      if (step.kind == Step::kSplit) {
        SplitWithPattern(piece, *step.pattern, step.behavior, step.invert, &next);
        continue;
      }
      // ByteLevel: HF adds the prefix space to every piece (including each piece between
      // added tokens), then splits, then maps bytes to characters.
      std::string spaced;
      std::string_view s = piece;
      if (step.add_prefix_space && !piece.starts_with(' ')) {
        spaced = StrCat(" ", piece);
        s = spaced;
      }
      const size_t first = next.size();
      if (step.pattern != nullptr) {
        SplitWithPattern(s, *step.pattern, SplitBehavior::kIsolated, false, &next);
      } else if (!s.empty()) {
        next.emplace_back(s);
      }
      for (size_t i = first; i < next.size(); ++i) {
        std::string mapped;
        mapped.reserve(next[i].size() * 2);
        AppendByteLevel(next[i], &mapped);
        next[i] = std::move(mapped);
      }
    }
    current.swap(next);
  }
  for (std::string& piece : current) {
    if (!piece.empty()) out->push_back(std::move(piece));
  }
}

absl::StatusOr<PreTokenizer> PreTokenizer::FromJson(const Json& json, std::string_view path) {
  PreTokenizer p;
  if (json.is_null()) return p;
  if (absl::Status st = Parse(json, path, &p); !st.ok()) return st;
  // ByteLevel maps each byte to a character of up to 2 bytes; applied repeatedly it doubles the
  // text every time, which a hostile file could use to exhaust memory. Real tokenizers use one.
  int byte_level = 0;
  for (const Step& step : p.steps_) byte_level += step.kind == Step::kByteLevel ? 1 : 0;
  if (byte_level > 1)
    return FieldError(path,
                      StrCat("has ", byte_level, " ByteLevel steps; at most one is supported"));
  return p;
}

absl::Status PreTokenizer::Parse(const Json& json, std::string_view path, PreTokenizer* out) {
  if (!json.is_object()) {
    return FieldError(path, StrCat("expected an object, got ", Abbrev(json)));
  }
  absl::StatusOr<std::string> type = GetString(json, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const std::string field = JoinPath(path, "pretokenizers");
    const Json* list = FindField(json, "pretokenizers");
    if (list == nullptr || !list->is_array()) return FieldError(field, "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      if (absl::Status st = Parse((*list)[i], IndexPath(field, i), out); !st.ok()) return st;
    }
    return absl::OkStatus();
  }
  if (*type == "ByteLevel") {
    absl::StatusOr<bool> prefix = GetBool(json, "add_prefix_space", path, true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<bool> use_regex = GetBool(json, "use_regex", path, true);
    if (!use_regex.ok()) return use_regex.status();
    out->AddByteLevel(*prefix, *use_regex ? Gpt2Regex() : nullptr);
    return absl::OkStatus();
  }
  if (*type == "Split") {
    absl::StatusOr<std::shared_ptr<const Regex>> pattern = GetPattern(json, "pattern", path);
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<std::string> behavior_name = GetString(json, "behavior", path);
    if (!behavior_name.ok()) return behavior_name.status();
    SplitBehavior behavior;
    if (*behavior_name == "Removed") {
      behavior = SplitBehavior::kRemoved;
    } else if (*behavior_name == "Isolated") {
      behavior = SplitBehavior::kIsolated;
    } else if (*behavior_name == "MergedWithPrevious") {
      behavior = SplitBehavior::kMergedWithPrevious;
    } else if (*behavior_name == "MergedWithNext") {
      behavior = SplitBehavior::kMergedWithNext;
    } else if (*behavior_name == "Contiguous") {
      behavior = SplitBehavior::kContiguous;
    } else {
      return FieldError(JoinPath(path, "behavior"),
                        StrCat("unknown split behavior \"", *behavior_name,
                               "\" (expected Removed, Isolated, MergedWithPrevious, "
                               "MergedWithNext or Contiguous)"));
    }
    absl::StatusOr<bool> invert = GetBool(json, "invert", path, false);
    if (!invert.ok()) return invert.status();
    out->AddSplit(*std::move(pattern), behavior, *invert);
    return absl::OkStatus();
  }
  return FieldError(JoinPath(path, "type"), StrCat("unsupported pre-tokenizer type \"", *type,
                                                   "\" (supported: ByteLevel, Split, Sequence)"));
}

}  // namespace engram
