// Lexer of the chat-template engine: Jinja2 source → text and tag tokens.
//
// Whitespace is where a re-implementation most easily differs from Jinja2 byte for byte, so
// this follows jinja2/lexer.py with the environment Hugging Face transformers renders chat
// templates in (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
//  * newlines (\r\n, \r) become \n and one trailing newline of the source is dropped;
//  * `{%-` / `{{-` / `{#-` strip all whitespace before the tag, `-%}` / `-}}` / `-#}` all after;
//  * trim_blocks: a block or comment tag (not `{{ }}`) swallows one \n right after it, unless
//    it ends with `+%}`;
//  * lstrip_blocks: spaces and tabs between the start of a line and a block or comment tag
//    are removed, unless it opens with `{%+`;
//  * a tag end inside open brackets does not end the tag (`{{ {'a': {'b': 1}} }}`).
// `{% raw %}...{% endraw %}` is text. Comments produce no token.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_LEXER_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace engram::jinja {

struct Token {
  enum class Type {
    kText,        // text: the literal output
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,        // text: identifier (keywords are names too)
    kString,      // text: the unescaped value
    kInt,         // ival
    kFloat,       // fval
    kOp,          // text: operator or bracket
    kEof,
  };
  Type type = Type::kEof;
  std::string text;
  int64_t ival = 0;
  double fval = 0;
  size_t pos = 0;  // offset in the normalized source

  bool IsOp(std::string_view op) const { return type == Type::kOp && text == op; }
  bool IsName(std::string_view name) const { return type == Type::kName && text == name; }
};

// Newline normalization and the dropped trailing newline (what Jinja2 lexes).
std::string NormalizeSource(std::string_view source);

// Tokens of a normalized source, ending with kEof. Errors name the line and column.
absl::StatusOr<std::vector<Token>> Lex(std::string_view source);

// "line L, column C" (1-based) of an offset, for error messages.
std::string Where(std::string_view source, size_t pos);

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_LEXER_H_
