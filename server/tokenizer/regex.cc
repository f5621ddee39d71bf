// PCRE2 wrapper; see regex.h for why the pattern is rewritten and how iteration works.
#include "server/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram {

namespace {

// PropList.txt White_Space as a PCRE2 class body.
constexpr std::string_view kWhiteSpaceClass =
    "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}";

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
};

std::string TranslateOnigPattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      i += 2;
      // Oniguruma's \s is exactly White_Space; PCRE2's (UCP) also matches U+180E
      // MONGOLIAN VOWEL SEPARATOR, which left White_Space in Unicode 6.3.
      if (d == 's') {
        out += in_class ? std::string(kWhiteSpaceClass) : StrCat("[", kWhiteSpaceClass, "]");
      } else if (d == 'S' && !in_class) {
        out += StrCat("[^", kWhiteSpaceClass, "]");
      } else if (d == 'h') {  // Ruby syntax: \h is a hex digit, not horizontal space
        out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (d == 'H' && !in_class) {
        out += "[^0-9a-fA-F]";
      } else {
        out += c;
        out += d;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      if (i < p.size() && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

std::string Regex::Escape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size() * 2);
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    const bool alnum = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z');
    // A backslash before any ASCII non-alphanumeric is a literal in PCRE2; multibyte UTF-8
    // and alphanumerics stay as they are.
    if (u < 0x80 && !alnum && u >= 0x20) out += '\\';
    out += c;
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const Regex>> Regex::Compile(std::string_view pattern) {
  const std::string translated = TranslateOnigPattern(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  // MULTILINE: Oniguruma's Ruby syntax makes ^ and $ line anchors.
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(error, msg, sizeof(msg));
    return absl::InvalidArgumentError(StrCat("cannot compile regex \"", pattern,
                                             "\": ", reinterpret_cast<const char*>(msg),
                                             " at offset ", offset));
  }
  // JIT is an optimization only: when it is unavailable pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  auto* holder = new Code{code};
  return std::shared_ptr<const Regex>(new Regex(std::string(pattern), holder));
}

Regex::~Regex() {
  pcre2_code_free(code_->code);
  delete code_;
}

void Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
  if (!IsValidUtf8(text)) return;  // PCRE2_NO_UTF_CHECK below relies on this
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  // The onig crate skips an empty match that ends where the previous match ended and retries
  // one character later; matching that keeps empty-match patterns splitting identically.
  size_t last_match_end = SIZE_MAX;
  while (pos <= text.size()) {
    int rc = pcre2_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The interpreter keeps its backtracking state on the heap, so it can finish matches
      // that overflow the JIT's small default machine stack.
      rc = pcre2_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md, nullptr);
    }
    if (rc < 0) break;  // no (further) match, or a resource limit: the rest is unmatched
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0];
    const size_t end = ov[1];
    if (begin == end && end == last_match_end) {
      if (pos >= text.size()) break;
      pos += ScanUtf8(text.substr(pos)).len;
      continue;
    }
    out->emplace_back(begin, end);
    pos = end;
    last_match_end = end;
  }
  pcre2_match_data_free(md);
}

}  // namespace engram
