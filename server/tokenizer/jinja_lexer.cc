// Jinja2's lexer rules (jinja2/lexer.py) under Hugging Face's chat-template environment;
// see jinja_lexer.h for the whitespace rules this reproduces.
#include "server/tokenizer/jinja_lexer.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_pystr.h"
#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

bool StartsWith(std::string_view s, size_t pos, std::string_view prefix) {
  return s.substr(pos, prefix.size()) == prefix;
}

// Skips Python `\s*` from pos.
size_t SkipSpace(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t next = pos;
    if (!PyIsSpace(DecodeUtf8At(s, &next))) break;
    pos = next;
  }
  return pos;
}

bool AllSpace(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size())
    if (!PyIsSpace(DecodeUtf8At(s, &pos))) return false;
  return true;
}

absl::Status LexError(std::string_view src, size_t pos, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(Where(src, pos), ": ", what));
}

// Python string-literal escapes (what `.decode("unicode-escape")` accepts).
absl::StatusOr<std::string> Unescape(std::string_view src, size_t pos, std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char c = body[++i];
    auto hex = [&](size_t digits) -> absl::StatusOr<char32_t> {
      if (i + digits >= body.size())
        return LexError(src, pos, "truncated \\x/\\u/\\U escape in a string literal");
      const std::string h(body.substr(i + 1, digits));
      for (char d : h)
        if (!std::isxdigit(static_cast<unsigned char>(d)))
          return LexError(src, pos, "bad \\x/\\u/\\U escape in a string literal");
      i += digits;
      return static_cast<char32_t>(std::strtoul(h.c_str(), nullptr, 16));
    };
    switch (c) {
      case '\n':
        break;
      case '\\':
      case '\'':
      case '"':
        out.push_back(c);
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        auto cp = hex(c == 'x' ? 2 : c == 'u' ? 4 : 8);
        if (!cp.ok()) return cp.status();
        if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
          return LexError(src, pos, "escape outside Unicode scalar values in a string literal");
        AppendUtf8(*cp, &out);
        break;
      }
      case 'N':
        return LexError(src, pos, "unsupported \\N{...} escape in a string literal");
      default:
        if (c >= '0' && c <= '7') {
          unsigned v = static_cast<unsigned>(c - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k)
            v = v * 8 + static_cast<unsigned>(body[++i] - '0');
          AppendUtf8(static_cast<char32_t>(v), &out);
        } else {
          out.push_back('\\');
          out.push_back(c);
        }
    }
  }
  return out;
}

// Lexes the inside of one {{ }} or {% %} tag from *pos (just after the opener and its sign).
// Leaves *pos after the end tag (and the whitespace it swallows); sets *line_starting.
absl::Status LexTag(std::string_view src, size_t* pos, bool block, std::vector<Token>* out,
                    bool* line_starting) {
  std::string balance;
  const size_t open = *pos;
  const std::string_view close = block ? "%}" : "}}";
  size_t p = *pos;
  while (true) {
    p = SkipSpace(src, p);
    if (p >= src.size())
      return LexError(src, open,
                      StrCat("unexpected end of template: tag not closed with '", close, "'"));
    if (balance.empty()) {
      size_t end = std::string_view::npos;
      if (src[p] == '-' && StartsWith(src, p + 1, close)) {
        end = SkipSpace(src, p + 3);
      } else if (block && src[p] == '+' && StartsWith(src, p + 1, close)) {
        end = p + 3;
      } else if (StartsWith(src, p, close)) {
        end = p + 2;
        if (block && end < src.size() && src[end] == '\n') ++end;  // trim_blocks
      }
      if (end != std::string_view::npos) {
        out->push_back({block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", 0, 0, p});
        *line_starting = end > 0 && src[end - 1] == '\n';
        *pos = end;
        return absl::OkStatus();
      }
    }
    const char c = src[p];
    Token t;
    t.pos = p;
    if (std::isdigit(static_cast<unsigned char>(c))) {
      auto dec = [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; };
      size_t q = p;
      int base = 10;
      const char x = p + 1 < src.size()
                         ? static_cast<char>(std::tolower(static_cast<unsigned char>(src[p + 1])))
                         : '\0';
      if (c == '0' && (x == 'x' || x == 'o' || x == 'b')) {
        base = x == 'x' ? 16 : x == 'o' ? 8 : 2;
        q = p + 2;
        while (q < src.size() &&
               (std::isxdigit(static_cast<unsigned char>(src[q])) || src[q] == '_'))
          ++q;
      } else {
        // Digits with single underscores between them, then an optional fraction / exponent.
        auto digits = [&] {
          while (q < src.size() && (dec(src[q]) || (src[q] == '_' && q + 1 < src.size() &&
                                                    dec(src[q + 1]) && dec(src[q - 1]))))
            ++q;
        };
        digits();
        if (q + 1 < src.size() && src[q] == '.' && dec(src[q + 1])) {
          ++q;
          digits();
          base = 0;
        }
        if (q < src.size() && (src[q] == 'e' || src[q] == 'E')) {
          size_t r = q + 1;
          if (r < src.size() && (src[r] == '+' || src[r] == '-')) ++r;
          if (r < src.size() && dec(src[r])) {
            q = r;
            digits();
            base = 0;
          }
        }
      }
      std::string text(src.substr(base == 16 || base == 8 || base == 2 ? p + 2 : p,
                                  q - (base == 16 || base == 8 || base == 2 ? p + 2 : p)));
      std::erase(text, '_');
      if (base == 0) {
        t.type = Token::Type::kFloat;
        t.fval = std::strtod(text.c_str(), nullptr);
      } else {
        errno = 0;
        char* endp = nullptr;
        t.ival = text.empty() ? 0 : std::strtoll(text.c_str(), &endp, base);
        if (text.empty() || errno == ERANGE || *endp != '\0')
          return LexError(src, p, "malformed or out-of-range (64-bit) integer literal");
        t.type = Token::Type::kInt;
      }
      p = q;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t q = p;
      while (q < src.size() && (std::isalnum(static_cast<unsigned char>(src[q])) || src[q] == '_'))
        ++q;
      t.type = Token::Type::kName;
      t.text = std::string(src.substr(p, q - p));
      p = q;
    } else if (c == '\'' || c == '"') {
      size_t q = p + 1;
      while (q < src.size() && src[q] != c) q += src[q] == '\\' ? 2 : 1;
      if (q >= src.size()) return LexError(src, p, "unterminated string literal");
      auto value = Unescape(src, p, src.substr(p + 1, q - p - 1));
      if (!value.ok()) return value.status();
      t.type = Token::Type::kString;
      t.text = *std::move(value);
      p = q + 1;
    } else {
      static constexpr std::string_view kOps2[] = {"//", "**", "==", "!=", ">=", "<="};
      t.type = Token::Type::kOp;
      for (std::string_view op : kOps2)
        if (StartsWith(src, p, op)) t.text = std::string(op);
      if (t.text.empty()) {
        if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos)
          return LexError(src, p, StrCat("unexpected character '", std::string(1, c), "'"));
        t.text = std::string(1, c);
      }
      p += t.text.size();
      if (c == '(' || c == '[' || c == '{') {
        balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (c == ')' || c == ']' || c == '}') {
        if (balance.empty() || balance.back() != c)
          return LexError(src, t.pos, StrCat("unexpected '", std::string(1, c), "'"));
        balance.pop_back();
      }
    }
    out->push_back(std::move(t));
  }
}

}  // namespace

std::string NormalizeSource(std::string_view source) {
  std::string s;
  const std::string valid = Utf8Lossy(source);
  s.reserve(valid.size());
  for (size_t i = 0; i < valid.size(); ++i) {
    if (valid[i] == '\r') {
      s.push_back('\n');
      if (i + 1 < valid.size() && valid[i + 1] == '\n') ++i;
    } else {
      s.push_back(valid[i]);
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();  // keep_trailing_newline=False
  return s;
}

std::string Where(std::string_view source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return StrCat("line ", line, ", column ", col);
}

absl::StatusOr<std::vector<Token>> Lex(std::string_view src) {
  std::vector<Token> out;
  size_t pos = 0;
  bool line_starting = true;
  while (pos < src.size()) {
    size_t start = pos;
    while (true) {
      start = src.find('{', start);
      if (start == std::string_view::npos || start + 1 >= src.size()) break;
      const char k = src[start + 1];
      if (k == '{' || k == '%' || k == '#') break;
      ++start;
    }
    if (start == std::string_view::npos || start + 1 >= src.size()) {
      out.push_back({Token::Type::kText, std::string(src.substr(pos)), 0, 0, pos});
      break;
    }
    const char kind = src[start + 1];
    const char sign = start + 2 < src.size() && (src[start + 2] == '-' || src[start + 2] == '+')
                          ? src[start + 2]
                          : '\0';
    std::string text(src.substr(pos, start - pos));
    if (sign == '-') {
      text = PyStrip(text, std::nullopt, false, true);
    } else if (sign != '+' && kind != '{') {      // lstrip_blocks
      const size_t l_pos = text.rfind('\n') + 1;  // npos + 1 == 0
      if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
          AllSpace(std::string_view(text).substr(l_pos)))
        text.resize(l_pos);
    }
    if (!text.empty()) out.push_back({Token::Type::kText, std::move(text), 0, 0, pos});
    size_t p = start + 2 + (sign != '\0' ? 1 : 0);

    if (kind == '#') {
      const size_t close = src.find("#}", p);
      if (close == std::string_view::npos)
        return LexError(src, start, "unexpected end of template: comment not closed with '#}'");
      size_t end = close + 2;
      const char before = close > p ? src[close - 1] : '\0';
      if (before == '-') {
        end = SkipSpace(src, end);
      } else if (before != '+' && end < src.size() && src[end] == '\n') {
        ++end;  // trim_blocks
      }
      line_starting = src[end - 1] == '\n';
      pos = end;
      continue;
    }
    if (kind == '%') {  // {% raw %} ... {% endraw %}
      size_t q = SkipSpace(src, p);
      if (StartsWith(src, q, "raw")) {
        size_t r = SkipSpace(src, q + 3);
        size_t body = std::string_view::npos;
        if (StartsWith(src, r, "-%}")) {
          body = SkipSpace(src, r + 3);
        } else if (StartsWith(src, r, "%}")) {
          body = r + 2;
        }
        if (body != std::string_view::npos) {
          size_t e = body;
          while ((e = src.find("{%", e)) != std::string_view::npos) {
            size_t t = e + 2;
            const char esign = t < src.size() && (src[t] == '-' || src[t] == '+') ? src[t] : '\0';
            if (esign) ++t;
            t = SkipSpace(src, t);
            if (StartsWith(src, t, "endraw")) {
              t = SkipSpace(src, t + 6);
              size_t after = std::string_view::npos;
              if (StartsWith(src, t, "-%}")) {
                after = SkipSpace(src, t + 3);
              } else if (StartsWith(src, t, "+%}")) {
                after = t + 3;
              } else if (StartsWith(src, t, "%}")) {
                after = t + 2;
                if (after < src.size() && src[after] == '\n') ++after;
              }
              if (after != std::string_view::npos) {
                std::string raw(src.substr(body, e - body));
                if (esign == '-') raw = PyStrip(raw, std::nullopt, false, true);
                if (!raw.empty()) out.push_back({Token::Type::kText, std::move(raw), 0, 0, body});
                line_starting = src[after - 1] == '\n';
                pos = after;
                break;
              }
            }
            e += 2;
          }
          if (e == std::string_view::npos)
            return LexError(src, start, "unexpected end of template: {% raw %} not closed");
          continue;
        }
      }
    }
    out.push_back(
        {kind == '%' ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", 0, 0, start});
    if (absl::Status st = LexTag(src, &p, kind == '%', &out, &line_starting); !st.ok()) return st;
    pos = p;
  }
  out.push_back({Token::Type::kEof, "", 0, 0, src.size()});
  return out;
}

}  // namespace engram::jinja
