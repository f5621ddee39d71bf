// Python str semantics for the template engine; see jinja_pystr.h. Character properties come
// from utf8proc (Unicode 15 in Debian 12, close to the Python 3.11 that renders the reference).
#include "server/tokenizer/jinja_pystr.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "server/tokenizer/unicode.h"

namespace engram::jinja {
namespace {

utf8proc_category_t Category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

bool IsCased(char32_t c) {
  const auto cat = Category(c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

void AppendUpper(char32_t c, std::u32string* out) {
  // The one-to-many upper mappings of SpecialCasing.txt that real text meets; the rest map
  // one to one (utf8proc has no full-mapping API).
  switch (c) {
    case U'ß':
      *out += U"SS";
      return;
    case U'ŉ':
      *out += U"ʼN";
      return;
    case U'ﬀ':
      *out += U"FF";
      return;
    case U'ﬁ':
      *out += U"FI";
      return;
    case U'ﬂ':
      *out += U"FL";
      return;
    default:
      out->push_back(static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
  }
}

void AppendLower(char32_t c, std::u32string* out) {
  if (c == U'İ') {  // full mapping: i + COMBINING DOT ABOVE
    *out += U"i\u0307";
    return;
  }
  out->push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
}

bool IsCaseIgnorable(char32_t c) {
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:  // Word_Break MidLetter, MidNumLet, Single_Quote
      return c == 0x27 || c == 0x2E || c == 0x3A || c == 0xB7 || c == 0x387 || c == 0x55F ||
             c == 0x5F4 || c == 0x2018 || c == 0x2019 || c == 0x2024 || c == 0x2027 ||
             c == 0xFE13 || c == 0xFE52 || c == 0xFE55 || c == 0xFF07 || c == 0xFF0E || c == 0xFF1A;
  }
}

// Lowercase of u[i] with CPython's Final_Sigma rule: a capital sigma after a cased letter
// (case-ignorables between) and not before one becomes final sigma.
void AppendLowerAt(const std::u32string& u, size_t i, std::u32string* out) {
  if (u[i] != 0x3A3) return AppendLower(u[i], out);
  size_t j = i;
  while (j > 0 && IsCaseIgnorable(u[j - 1])) --j;
  bool final_sigma = j > 0 && IsCased(u[j - 1]);
  if (final_sigma) {
    size_t k = i + 1;
    while (k < u.size() && IsCaseIgnorable(u[k])) ++k;
    final_sigma = k == u.size() || !IsCased(u[k]);
  }
  out->push_back(final_sigma ? 0x3C2 : 0x3C3);
}

void AppendTitle(char32_t c, std::u32string* out) {
  out->push_back(static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))));
}

bool IsPrintable(char32_t c) {
  if (c == U' ') return true;
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

bool IsLineBreak(char32_t c) {
  return c == U'\n' || c == U'\r' || c == U'\v' || c == U'\f' || (c >= 0x1C && c <= 0x1E) ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

}  // namespace

std::u32string ToU32(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  size_t pos = 0;
  while (pos < utf8.size()) out.push_back(DecodeUtf8At(utf8, &pos));
  return out;
}

std::string FromU32(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

size_t CodePointCount(std::string_view utf8) {
  size_t n = 0;
  for (char ch : utf8) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

bool PyIsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

std::string PyStrip(std::string_view s, std::optional<std::string_view> chars, bool left,
                    bool right) {
  const std::u32string u = ToU32(s);
  const std::u32string set = chars ? ToU32(*chars) : std::u32string();
  auto strip = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : PyIsSpace(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip(u[b])) ++b;
  if (right)
    while (e > b && strip(u[e - 1])) --e;
  return FromU32(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> PySplit(std::string_view s, std::optional<std::string_view> sep,
                                 int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    if (!from_right) {
      size_t start = 0;
      while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
        const size_t at = s.find(*sep, start);
        if (at == std::string_view::npos) break;
        out.emplace_back(s.substr(start, at - start));
        start = at + sep->size();
      }
      out.emplace_back(s.substr(start));
      return out;
    }
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(s.substr(0, end));
    return {out.rbegin(), out.rend()};
  }
  std::u32string u = ToU32(s);
  if (from_right) std::reverse(u.begin(), u.end());
  size_t i = 0;
  while (true) {
    while (i < u.size() && PyIsSpace(u[i])) ++i;
    if (i == u.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      size_t e = u.size();
      while (e > i && PyIsSpace(u[e - 1])) --e;
      std::u32string rest = u.substr(i, e - i);
      if (from_right) std::reverse(rest.begin(), rest.end());
      out.push_back(FromU32(rest));
      break;
    }
    size_t j = i;
    while (j < u.size() && !PyIsSpace(u[j])) ++j;
    std::u32string word = u.substr(i, j - i);
    if (from_right) std::reverse(word.begin(), word.end());
    out.push_back(FromU32(word));
    i = j;
  }
  if (from_right) return {out.rbegin(), out.rend()};
  return out;
}

std::vector<std::string> PySplitLines(std::string_view s, bool keepends) {
  const std::u32string u = ToU32(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < u.size()) {
    if (!IsLineBreak(u[i])) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    if (u[i] == U'\r' && end < u.size() && u[end] == U'\n') ++end;
    out.push_back(FromU32(std::u32string_view(u).substr(start, (keepends ? end : i) - start)));
    start = i = end;
  }
  if (start < u.size()) out.push_back(FromU32(std::u32string_view(u).substr(start)));
  return out;
}

std::string PyReplace(std::string_view s, std::string_view old, std::string_view repl,
                      int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    size_t pos = 0;
    while (true) {
      if (count < 0 || done < count) {
        out.append(repl);
        ++done;
      }
      if (pos >= s.size()) break;
      const size_t start = pos;
      DecodeUtf8At(s, &pos);
      out.append(s.substr(start, pos - start));
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out.append(s.substr(start, at - start)).append(repl);
    start = at + old.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

int64_t PyFind(std::string_view s, std::string_view sub, bool from_right) {
  const size_t at = from_right ? s.rfind(sub) : s.find(sub);
  if (at == std::string_view::npos) return -1;
  return static_cast<int64_t>(CodePointCount(s.substr(0, at)));
}

int64_t PyCount(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(CodePointCount(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(sub); at != std::string_view::npos; at = s.find(sub, at + sub.size()))
    ++n;
  return n;
}

std::string PyUpper(std::string_view s) {
  std::u32string out;
  for (char32_t c : ToU32(s)) AppendUpper(c, &out);
  return FromU32(out);
}

std::string PyLower(std::string_view s) {
  const std::u32string u = ToU32(s);
  std::u32string out;
  for (size_t i = 0; i < u.size(); ++i) AppendLowerAt(u, i, &out);
  return FromU32(out);
}

std::string PyTitle(std::string_view s) {
  const std::u32string u = ToU32(s);
  std::u32string out;
  bool prev_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    if (prev_cased) {
      AppendLowerAt(u, i, &out);
    } else {
      AppendTitle(u[i], &out);
    }
    prev_cased = IsCased(u[i]);
  }
  return FromU32(out);
}

std::string PyCapitalize(std::string_view s) {
  const std::u32string u = ToU32(s);
  std::u32string out;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 0) {
      AppendTitle(u[i], &out);
    } else {
      AppendLowerAt(u, i, &out);
    }
  }
  return FromU32(out);
}

bool PyIsClass(std::string_view s, PyCharClass cls) {
  const std::u32string u = ToU32(s);
  if (u.empty()) return false;
  bool any_cased = false;
  for (char32_t c : u) {
    const auto cat = Category(c);
    const bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    const bool digit = cat == UTF8PROC_CATEGORY_ND;
    const bool numeric = digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
    switch (cls) {
      case PyCharClass::kAlpha:
        if (!letter) return false;
        break;
      case PyCharClass::kDigit:
        if (!digit && cat != UTF8PROC_CATEGORY_NO) return false;
        break;
      case PyCharClass::kAlnum:
        if (!letter && !numeric) return false;
        break;
      case PyCharClass::kSpace:
        if (!PyIsSpace(c)) return false;
        break;
      case PyCharClass::kUpper:
      case PyCharClass::kLower: {
        const bool want_upper = cls == PyCharClass::kUpper;
        if (cat == UTF8PROC_CATEGORY_LT) return false;
        if (cat == UTF8PROC_CATEGORY_LU) {
          if (!want_upper) return false;
          any_cased = true;
        } else if (cat == UTF8PROC_CATEGORY_LL) {
          if (want_upper) return false;
          any_cased = true;
        }
        break;
      }
    }
  }
  return (cls == PyCharClass::kUpper || cls == PyCharClass::kLower) ? any_cased : true;
}

std::string PyRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  char buf[16];
  for (char32_t c : ToU32(s)) {
    if (c == static_cast<char32_t>(quote) || c == U'\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == U'\t') {
      out += "\\t";
    } else if (c == U'\n') {
      out += "\\n";
    } else if (c == U'\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else if (c >= 0x80 && !IsPrintable(c)) {
      if (c < 0x100) {
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      AppendUtf8(c, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits and their decimal exponent, from the scientific form.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e_at = sci.find('e');
  std::string digits = sci.substr(0, e_at);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_at + 1));
  if (exp < -4 || exp >= 16) {
    std::string mant = digits.substr(0, 1);
    if (digits.size() > 1) mant += "." + digits.substr(1);
    std::snprintf(buf, sizeof buf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return sign + mant + buf;
  }
  std::string out;
  if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." +
          digits.substr(static_cast<size_t>(exp) + 1);
  }
  return sign + out;
}

std::string PyJsonString(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  char buf[16];
  for (char32_t c : ToU32(s)) {
    switch (c) {
      case U'"':
        out += "\\\"";
        continue;
      case U'\\':
        out += "\\\\";
        continue;
      case U'\n':
        out += "\\n";
        continue;
      case U'\r':
        out += "\\r";
        continue;
      case U'\t':
        out += "\\t";
        continue;
      case U'\b':
        out += "\\b";
        continue;
      case U'\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        const char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      AppendUtf8(c, &out);
    }
  }
  out += "\"";
  return out;
}

}  // namespace engram::jinja
