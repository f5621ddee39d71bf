// Evaluator of the chat-template engine: runs a parsed template (jinja_ast.h) over a context
// of variables and returns the text, with Jinja2's scoping (a for-loop body and a macro get
// their own scope each iteration or call; if-blocks do not; namespace() objects carry state
// out of loops) and Python's operators (jinja_value.h).
//
// Errors are absl::Status: InvalidArgument for what Python would raise at render time (a
// TypeError, an undefined variable used as an object, raise_exception("...")), Unimplemented
// for a Python behaviour this engine lacks (64-bit integer overflow, printf-style '%').
// Both carry "line L, column C".
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_EVAL_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_EVAL_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/tokenizer/jinja_ast.h"

namespace engram::jinja {

// `context` holds the template's variables; the globals (range, namespace, ...) are added
// underneath, so a context variable of the same name shadows a global, as in Jinja2.
absl::StatusOr<std::string> Render(const Template& tmpl, const Dict& context);

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_EVAL_H_
