// String helpers that bridge std::string_view and Abseil.
//
// Debian's Abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW = 0, so absl::string_view is
// a distinct type: absl::StrCat rejects std::string_view and absl hash maps keyed by
// std::string cannot be probed with one. The tokenizer's API is std::string_view throughout,
// so these helpers do the (free) conversions in one place.
#ifndef ENGRAM_SERVER_TOKENIZER_STR_UTIL_H_
#define ENGRAM_SERVER_TOKENIZER_STR_UTIL_H_

#include <concepts>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace engram::tokenizer_internal {

inline absl::string_view AsAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view AsStd(absl::string_view s) { return {s.data(), s.size()}; }

inline void AppendPiece(std::string* out, const char* s) { out->append(s); }
inline void AppendPiece(std::string* out, const std::string& s) { out->append(s); }
inline void AppendPiece(std::string* out, std::string_view s) { out->append(s); }
inline void AppendPiece(std::string* out, absl::string_view s) { out->append(s.data(), s.size()); }
template <std::integral T>
void AppendPiece(std::string* out, T v) {
  out->append(std::to_string(v));
}

// absl::StrCat for std::string_view, absl::string_view, C strings and integers.
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (AppendPiece(&out, args), ...);
  return out;
}

}  // namespace engram::tokenizer_internal

#endif  // ENGRAM_SERVER_TOKENIZER_STR_UTIL_H_
