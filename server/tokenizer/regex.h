// PCRE2-backed regular expressions that behave like the Oniguruma engine Hugging Face
// tokenizers compiles tokenizer.json patterns with.
//
// Pre-tokenizer patterns (`\p{L}+`, `(?i:'s|'t)`, `\s+(?!\S)`, ...) decide token boundaries,
// so any semantic gap shows up as different token ids. PCRE2 in UTF + UCP mode agrees with
// Oniguruma on Unicode properties, case-insensitive matching and lookaround. Known differences
// are patched by rewriting the pattern: `\s` (Oniguruma: exactly White_Space; PCRE2 also
// matches U+180E) and Ruby's `\h` (hex digit, not horizontal space); `^`/`$` are line anchors
// in both (PCRE2_MULTILINE). Match iteration reproduces the Rust
// `onig` crate's `find_iter`, including its handling of empty matches.
#ifndef ENGRAM_SERVER_TOKENIZER_REGEX_H_
#define ENGRAM_SERVER_TOKENIZER_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace engram {

class Regex {
 public:
  // Compiles an Oniguruma-syntax pattern. Errors quote the pattern and PCRE2's message.
  static absl::StatusOr<std::shared_ptr<const Regex>> Compile(std::string_view pattern);

  // Pattern for a literal string (HF `{"String": ...}` patterns are escaped regexes).
  static std::string Escape(std::string_view literal);

  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of successive non-overlapping matches to *out.
  // Precondition: text is valid UTF-8. Safe to call concurrently.
  void FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  Regex(std::string pattern, Code* code) : pattern_(std::move(pattern)), code_(code) {}

  std::string pattern_;
  Code* code_;
};

// Exposed for tests: the Oniguruma → PCRE2 pattern rewrite.
std::string TranslateOnigPattern(std::string_view pattern);

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_REGEX_H_
