// Typed access to tokenizer.json fields with errors that name the offending field.
//
// tokenizer.json files come from many exporters; when one carries a component or a value this
// library does not implement, the operator needs the exact JSON path ("pre_tokenizer.
// pretokenizers[1].type") and value to know what to change, not a generic type error.
#ifndef ENGRAM_SERVER_TOKENIZER_JSON_UTIL_H_
#define ENGRAM_SERVER_TOKENIZER_JSON_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/regex.h"
#include "server/util/str_cat.h"

namespace engram::tokenizer_internal {

using Json = nlohmann::json;

// Debian's Abseil has its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0): absl hash
// maps keyed by std::string are probed with it, and Status messages come back as it.
inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view AsStd(absl::string_view s) { return {s.data(), s.size()}; }

// Largest token id accepted. Tables are sized by the largest id, so a corrupt id near 2^31
// would otherwise allocate gigabytes; real vocabularies stay below 2^18.
inline constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

inline std::string JoinPath(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : StrCat(path, ".", key);
}

inline std::string IndexPath(std::string_view path, size_t i) { return StrCat(path, "[", i, "]"); }

inline absl::Status FieldError(std::string_view path, std::string_view message) {
  return absl::InvalidArgumentError(StrCat("field '", path, "': ", message));
}

// Shortens a JSON value for an error message (vocab objects can be megabytes).
inline std::string Abbrev(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = StrCat(s.substr(0, 77), "...");
  return s;
}

// The member `key` of `obj`, or nullptr when it is absent or JSON null.
inline const Json* FindField(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline absl::StatusOr<std::string> GetString(const Json& obj, std::string_view key,
                                             std::string_view path) {
  const Json* v = FindField(obj, key);
  if (v == nullptr) return FieldError(JoinPath(path, key), "missing");
  if (!v->is_string()) {
    return FieldError(JoinPath(path, key), StrCat("expected a string, got ", Abbrev(*v)));
  }
  return v->get<std::string>();
}

inline absl::StatusOr<bool> GetBool(const Json& obj, std::string_view key, std::string_view path,
                                    bool default_value) {
  const Json* v = FindField(obj, key);
  if (v == nullptr) return default_value;
  if (!v->is_boolean()) {
    return FieldError(JoinPath(path, key), StrCat("expected true or false, got ", Abbrev(*v)));
  }
  return v->get<bool>();
}

// A HF `Pattern`: {"Regex": "..."} (Oniguruma syntax) or {"String": "..."} (a literal).
inline absl::StatusOr<std::shared_ptr<const Regex>> GetPattern(const Json& obj,
                                                               std::string_view key,
                                                               std::string_view path) {
  const std::string field = JoinPath(path, key);
  const Json* v = FindField(obj, key);
  if (v == nullptr) return FieldError(field, "missing");
  absl::StatusOr<std::shared_ptr<const Regex>> re;
  if (const Json* r = FindField(*v, "Regex"); r != nullptr && r->is_string()) {
    re = Regex::Compile(r->get<std::string>());
  } else if (const Json* s = FindField(*v, "String"); s != nullptr && s->is_string()) {
    re = Regex::Compile(Regex::Escape(s->get<std::string>()));
  } else {
    return FieldError(field,
                      StrCat("expected {\"Regex\": ...} or {\"String\": ...}, got ", Abbrev(*v)));
  }
  if (!re.ok()) return FieldError(field, AsStd(re.status().message()));
  return re;
}

}  // namespace engram::tokenizer_internal

#endif  // ENGRAM_SERVER_TOKENIZER_JSON_UTIL_H_
