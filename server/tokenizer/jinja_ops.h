// Python's binary operators and comparisons on template values, for the chat-template
// evaluator: + - * / // % ** ~ with Python's int/float/str/list rules (floored division and
// modulo, str and list repetition), chained comparisons, `in`. Errors are Python's TypeErrors
// as InvalidArgument; 64-bit overflow (Python ints are unbounded) and printf-style '%' are
// Unimplemented.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_OPS_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_OPS_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/tokenizer/jinja_value.h"

namespace engram::jinja {

// `l op r` for op in + - * / // % ** ~.
absl::StatusOr<Value> Arith(const std::string& op, const Value& l, const Value& r);
// `l op r` for op in == != < <= > >= in, not in.
absl::StatusOr<bool> Compare(const std::string& op, const Value& l, const Value& r);
// Python `item in container` (substring, list member, dict key).
absl::StatusOr<bool> Contains(const Value& container, const Value& item);

// The evaluator's Python-style errors, shared with jinja_eval.cc.
absl::Status TypeError(std::string_view message);
absl::Status UndefinedError(const Value& v);
absl::Status Overflow();  // a result outside int64

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_OPS_H_
