// Parser of the chat-template engine: tokens (jinja_lexer.h) → syntax tree (jinja_ast.h),
// following jinja2/parser.py's grammar and operator precedence.
//
// Everything a template names statically is checked here, so an unsupported template fails
// when the model loads rather than on a request: statements outside the supported set
// (include, import, extends, block, call, ...), unknown filters, tests and str/dict methods,
// and calls of names that are neither a global, a macro of the template nor assigned anywhere
// in it (a set/for/with/macro-parameter name may hold a macro). Errors are
// InvalidArgument (Jinja syntax errors) or Unimplemented (valid Jinja this engine lacks), and
// say what and where: "line 3, column 12: unsupported statement '{% include %}'".
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_PARSER_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_PARSER_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/tokenizer/jinja_ast.h"

namespace engram::jinja {

absl::StatusOr<std::shared_ptr<const Template>> ParseTemplate(std::string_view source);

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_PARSER_H_
