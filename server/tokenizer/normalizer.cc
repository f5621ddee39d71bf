// Normalizer steps; each mirrors the HF tokenizers normalizer of the same name (see
// normalizer.h for why one implementation serves the tokenizer and the Engram table).
#include "server/tokenizer/normalizer.h"

#include <algorithm>

#include <utility>

#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram {

// Bound on how much a normalizer's Replace steps may multiply a text (see FromJson).
constexpr double kMaxNormalizerGrowth = 1024;

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

std::string Lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) AppendLowercase(DecodeUtf8At(s, &i), &out);
  return out;
}

std::string StripAccents(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t begin = i;
    const char32_t cp = DecodeUtf8At(s, &i);
    if (!IsCombiningMark(cp)) out.append(s.substr(begin, i - begin));
  }
  return out;
}

std::string Strip(std::string_view s, bool left, bool right) {
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      if (!IsWhiteSpace(DecodeUtf8At(s, &next))) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t next = start;
      if (!IsWhiteSpace(DecodeUtf8At(s, &next))) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::string Replace(std::string_view s, const Regex& pattern, std::string_view content) {
  std::vector<std::pair<size_t, size_t>> matches;
  pattern.FindAll(s, &matches);
  if (matches.empty()) return std::string(s);
  std::string out;
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    out.append(s.substr(prev, begin - prev));
    out.append(content);
    prev = end;
  }
  out.append(s.substr(prev));
  return out;
}

}  // namespace

Normalizer& Normalizer::AddStrip(bool left, bool right) {
  Step step;
  step.kind = Step::kStrip;
  step.left = left;
  step.right = right;
  steps_.push_back(std::move(step));
  return *this;
}

Normalizer& Normalizer::AddReplace(std::shared_ptr<const Regex> pattern, std::string content) {
  Step step;
  step.kind = Step::kReplace;
  step.pattern = std::move(pattern);
  step.content = std::move(content);
  steps_.push_back(std::move(step));
  return *this;
}

Normalizer& Normalizer::AddPrepend(std::string prefix) {
  Step step;
  step.kind = Step::kPrepend;
  step.content = std::move(prefix);
  steps_.push_back(std::move(step));
  return *this;
}

std::string Normalizer::Normalize(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kNfc:
        s = engram::Normalize(s, NormalizationForm::kNfc);
        break;
      case Step::kNfd:
        s = engram::Normalize(s, NormalizationForm::kNfd);
        break;
      case Step::kNfkc:
        s = engram::Normalize(s, NormalizationForm::kNfkc);
        break;
      case Step::kNfkd:
        s = engram::Normalize(s, NormalizationForm::kNfkd);
        break;
      case Step::kLowercase:
        s = Lowercase(s);
        break;
      case Step::kStripAccents:
        s = StripAccents(s);
        break;
      case Step::kStrip:
        s = Strip(s, step.left, step.right);
        break;
      case Step::kReplace:
        s = Replace(s, *step.pattern, step.content);
        break;
      case Step::kPrepend:
        // HF prepends only to non-empty strings.
        if (!s.empty()) s.insert(0, step.content);
        break;
    }
  }
  return s;
}

absl::StatusOr<Normalizer> Normalizer::FromJson(const Json& json, std::string_view path) {
  Normalizer n;
  if (json.is_null()) return n;
  if (absl::Status st = Parse(json, path, &n); !st.ok()) return st;
  // Each Replace can multiply the text by its content length and steps compose, so a hostile
  // file could make every Encode allocate without bound. Real tokenizers stay far below this.
  double growth = 1;
  for (const Step& step : n.steps_) {
    if (step.kind == Step::kReplace)
      growth *= std::max<double>(1, static_cast<double>(step.content.size()));
  }
  if (growth > kMaxNormalizerGrowth)
    return FieldError(path, StrCat("Replace steps could grow the text ", growth,
                                   "-fold, more than the limit of ", kMaxNormalizerGrowth));
  return n;
}

absl::Status Normalizer::Parse(const Json& json, std::string_view path, Normalizer* out) {
  if (!json.is_object()) return FieldError(path, StrCat("expected an object, got ", Abbrev(json)));
  absl::StatusOr<std::string> type = GetString(json, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const std::string field = JoinPath(path, "normalizers");
    const Json* list = FindField(json, "normalizers");
    if (list == nullptr || !list->is_array()) return FieldError(field, "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      if (absl::Status st = Parse((*list)[i], IndexPath(field, i), out); !st.ok()) return st;
    }
  } else if (*type == "NFC") {
    out->AddNfc();
  } else if (*type == "NFD") {
    out->AddNfd();
  } else if (*type == "NFKC") {
    out->AddNfkc();
  } else if (*type == "NFKD") {
    out->AddNfkd();
  } else if (*type == "Lowercase") {
    out->AddLowercase();
  } else if (*type == "StripAccents") {
    out->AddStripAccents();
  } else if (*type == "Strip") {
    absl::StatusOr<bool> left = GetBool(json, "strip_left", path, true);
    if (!left.ok()) return left.status();
    absl::StatusOr<bool> right = GetBool(json, "strip_right", path, true);
    if (!right.ok()) return right.status();
    out->AddStrip(*left, *right);
  } else if (*type == "Replace") {
    absl::StatusOr<std::shared_ptr<const Regex>> pattern = GetPattern(json, "pattern", path);
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<std::string> content = GetString(json, "content", path);
    if (!content.ok()) return content.status();
    out->AddReplace(*std::move(pattern), *std::move(content));
  } else if (*type == "Prepend") {
    absl::StatusOr<std::string> prefix = GetString(json, "prepend", path);
    if (!prefix.ok()) return prefix.status();
    out->AddPrepend(*std::move(prefix));
  } else {
    return FieldError(JoinPath(path, "type"),
                      StrCat("unsupported normalizer type \"", *type,
                             "\" (supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, "
                             "Strip, Replace, Prepend, Sequence)"));
  }
  return absl::OkStatus();
}

}  // namespace engram
