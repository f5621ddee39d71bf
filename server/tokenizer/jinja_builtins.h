// The library a chat template can call: Jinja2's filters and tests, Python's str and dict
// methods, the globals Hugging Face transformers adds (raise_exception, strftime_now) and
// Jinja2's (range, namespace, dict), and attribute / item access with Jinja2's rules.
//
// The Is* predicates let the parser reject, when a model loads, a template that names
// something this engine does not implement, instead of failing on some request later.
// jinja_filters.cc holds the filters, jinja_tests.cc the tests, jinja_methods.cc methods,
// globals and access.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_BUILTINS_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_BUILTINS_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "server/tokenizer/jinja_value.h"

namespace engram::jinja {

bool IsFilter(std::string_view name);
bool IsTest(std::string_view name);
bool IsMethod(std::string_view name);  // of str, dict, or the loop object (cycle)
bool IsGlobal(std::string_view name);

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& v, const CallArgs& args);
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args);
absl::StatusOr<Value> CallMethod(const Value& obj, std::string_view name, const CallArgs& args);
// The globals (range, namespace, dict, raise_exception, strftime_now), as callables.
Dict Globals();

// `obj.name` and `obj[key]` as Jinja2's Environment.getattr / getitem: a missing key or
// index gives Undefined; any access on Undefined is an error (InvalidArgument).
absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// obj[start:stop:step] on a list, tuple or str; absent parts are Undefined values.
absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step);
// The items a `for` loop (or a filter over a sequence) visits: list items, dict keys, the
// characters of a string; nothing for Undefined. Errors for other types.
absl::StatusOr<List> Iterate(const Value& v);

// Positional-or-keyword arguments of a filter, method or global, with Python's errors.
class ArgReader {
 public:
  ArgReader(std::string_view fn, const CallArgs& args) : fn_(fn), args_(args) {}
  // Argument `index` (0-based, after the subject of a filter) or keyword `name`.
  absl::StatusOr<Value> Get(size_t index, std::string_view name, Value fallback = Value());
  // Fails if an argument was given that no Get() asked for.
  absl::Status Done() const;

 private:
  std::string_view fn_;
  const CallArgs& args_;
  size_t positional_used_ = 0;
  size_t keywords_used_ = 0;
};

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_BUILTINS_H_
