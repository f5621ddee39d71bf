// Jinja2's tests (`x is defined`, `is none`, `is string`, ...; jinja2/tests.py, version 3.1)
// for the chat-template engine; see jinja_builtins.h.
#include <algorithm>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_builtins.h"
#include "server/tokenizer/jinja_ops.h"
#include "server/tokenizer/jinja_pystr.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

constexpr std::string_view kTests[] = {
    "boolean",  "callable", "defined", "divisibleby", "eq",   "equalto",   "==",     "escaped",
    "even",     "false",    "filter",  "float",       "ge",   ">=",        "gt",     "greaterthan",
    ">",        "in",       "integer", "iterable",    "le",   "<=",        "lower",  "lt",
    "lessthan", "<",        "mapping", "ne",          "!=",   "none",      "number", "odd",
    "sameas",   "sequence", "string",  "test",        "true", "undefined", "upper"};

}  // namespace

bool IsTest(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args) {
  ArgReader r(name, args);
  const std::string n(name);
  auto other = r.Get(0, "other");
  if (!other.ok()) return other.status();
  const bool takes_arg = n == "divisibleby" || n == "eq" || n == "equalto" || n == "==" ||
                         n == "ne" || n == "!=" || n == "lt" || n == "lessthan" || n == "<" ||
                         n == "le" || n == "<=" || n == "gt" || n == "greaterthan" || n == ">" ||
                         n == "ge" || n == ">=" || n == "in" || n == "sameas";
  if (absl::Status st = takes_arg ? r.Done() : ArgReader(name, args).Done(); !st.ok()) return st;
  using K = Value::Kind;
  if (n == "defined") return !v.is_undefined();
  if (n == "undefined") return v.is_undefined();
  if (n == "none") return v.is_none();
  if (n == "boolean") return v.kind() == K::kBool;
  if (n == "true") return v.kind() == K::kBool && v.AsBool();
  if (n == "false") return v.kind() == K::kBool && !v.AsBool();
  if (n == "integer") return v.kind() == K::kInt;
  if (n == "float") return v.kind() == K::kFloat;
  if (n == "number") return v.is_number();
  if (n == "string") return v.is_string();
  if (n == "mapping") return v.is_dict();
  if (n == "iterable" || n == "sequence")
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (n == "callable") return v.kind() == K::kCallable;
  if (n == "escaped") return false;
  if (n == "filter" || n == "test")
    return v.is_string() && (n == "filter" ? IsFilter(v.str()) : IsTest(v.str()));
  if (n == "lower" || n == "upper")
    return PyIsClass(v.Str(), n == "lower" ? PyCharClass::kLower : PyCharClass::kUpper);
  if (n == "odd" || n == "even" || n == "divisibleby") {
    const Value d = n == "divisibleby" ? *other : Value::Int(2);
    if (!v.is_integral() || !d.is_integral() || d.AsInt() == 0)
      return TypeError(StrCat("test '", n, "' needs integers"));
    const int64_t m = ((v.AsInt() % d.AsInt()) + d.AsInt()) % d.AsInt();
    return n == "odd" ? m == 1 : m == 0;
  }
  if (n == "eq" || n == "equalto" || n == "==") return Equal(v, *other);
  if (n == "ne" || n == "!=") return !Equal(v, *other);
  if (n == "lt" || n == "lessthan" || n == "<") return Less(v, *other);
  if (n == "gt" || n == "greaterthan" || n == ">") return Less(*other, v);
  if (n == "le" || n == "<=") {
    auto gt = Less(*other, v);
    if (!gt.ok()) return gt.status();
    return !*gt;
  }
  if (n == "ge" || n == ">=") {
    auto lt = Less(v, *other);
    if (!lt.ok()) return lt.status();
    return !*lt;
  }
  if (n == "in") return Contains(*other, v);
  if (n == "sameas") {
    if (v.kind() != other->kind()) return false;
    if (v.is_list()) return &v.list() == &other->list();
    if (v.is_dict()) return &v.dict() == &other->dict();
    return Equal(v, *other);
  }
  return absl::UnimplementedError(StrCat("unsupported test '", n, "'"));
}

}  // namespace engram::jinja
