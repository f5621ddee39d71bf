// UTF-8 scanning follows Unicode's "substitution of maximal subparts" (Unicode 15, §3.9,
// table 3-7 of well-formed byte sequences), the rule both Rust and Python implement, so a
// lossy decode here yields exactly the same U+FFFD count as the reference tooling.
#include "server/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>

namespace engram {

Utf8Seq ScanUtf8(std::string_view s) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return {1, Utf8SeqKind::kValid};
  int need;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2;
    lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2;
    hi = 0x9F;  // excludes the UTF-16 surrogates
  } else if (b0 == 0xF0) {
    need = 3;
    lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3;
    hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {1, Utf8SeqKind::kInvalid};  // stray continuation byte, C0/C1, F5..FF
  }
  size_t i = 1;
  for (int k = 0; k < need; ++k, ++i) {
    if (i >= s.size()) return {i, Utf8SeqKind::kTruncated};
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < lo || c > hi) return {i, Utf8SeqKind::kInvalid};
    lo = 0x80;
    hi = 0xBF;
  }
  return {i, Utf8SeqKind::kValid};
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Seq seq = ScanUtf8(s.substr(i));
    if (seq.kind != Utf8SeqKind::kValid) return false;
    i += seq.len;
  }
  return true;
}

std::string Utf8Lossy(std::string_view bytes) {
  if (IsValidUtf8(bytes)) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() + 8);
  size_t i = 0;
  while (i < bytes.size()) {
    const Utf8Seq seq = ScanUtf8(bytes.substr(i));
    if (seq.kind == Utf8SeqKind::kValid) {
      out.append(bytes.substr(i, seq.len));
    } else {
      out.append(kReplacementUtf8);
    }
    i += seq.len;
  }
  return out;
}

size_t Utf8CompletePrefixLen(std::string_view bytes) {
  // Only the last (up to 4) bytes can hold a truncated character; scan from a boundary before
  // them. Stepping back over continuation bytes finds a lead byte or gives up after 3 steps,
  // which is enough because no character is longer than 4 bytes.
  size_t start = bytes.size();
  for (int k = 0; k < 3 && start > 0; ++k) {
    --start;
    const auto b = static_cast<uint8_t>(bytes[start]);
    if ((b & 0xC0) != 0x80) break;  // a lead byte (or ASCII): a candidate sequence start
  }
  size_t i = start;
  while (i < bytes.size()) {
    const Utf8Seq seq = ScanUtf8(bytes.substr(i));
    if (seq.kind == Utf8SeqKind::kTruncated) return i;
    i += seq.len;
  }
  return bytes.size();
}

char32_t DecodeUtf8At(std::string_view s, size_t* pos) {
  const auto b0 = static_cast<uint8_t>(s[*pos]);
  if (b0 < 0x80) {
    ++*pos;
    return b0;
  }
  int extra = b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
  char32_t cp = b0 & (0x3F >> extra);
  ++*pos;
  for (int k = 0; k < extra && *pos < s.size(); ++k, ++*pos) {
    cp = (cp << 6) | (static_cast<uint8_t>(s[*pos]) & 0x3F);
  }
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsWhiteSpace(char32_t cp) {
  // PropList.txt White_Space; fixed since Unicode 6.3, so a literal list is safe.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool IsCombiningMark(char32_t cp) {
  if (cp < 0x300) return false;
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
}

bool IsAlphanumeric(char32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

void AppendLowercase(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
    return;
  }
  // utf8proc has only the simple (1:1) mapping; U+0130 is the one character whose
  // unconditional full lowercase (SpecialCasing.txt) differs: "i" + COMBINING DOT ABOVE.
  if (cp == 0x130) {
    out->append("i\xCC\x87");
    return;
  }
  AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))), out);
}

std::string Normalize(std::string_view s, NormalizationForm form) {
  bool ascii = true;
  for (char c : s) {
    if (static_cast<uint8_t>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(s);  // every ASCII character is stable under all four forms
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalizationForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalizationForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalizationForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalizationForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  const std::string valid = IsValidUtf8(s) ? std::string() : Utf8Lossy(s);
  const std::string_view in = valid.empty() ? s : std::string_view(valid);
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                          static_cast<utf8proc_ssize_t>(in.size()), &dst,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) return std::string(in);  // only on allocation failure, since `in` is valid
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

}  // namespace engram
