// The values a chat template computes with: Python's None, bool, int, float, str, list/tuple
// and dict, Jinja's Undefined, namespace() objects and callables (macros, range(), ...).
//
// Templates are rendered by Python in the reference (HF transformers + Jinja2), so equality,
// truthiness, ordering, str() and repr() here follow Python's rules, and the JSON conversion
// keeps dict key order (json.loads does; tojson output shows it). Lists and dicts are
// immutable once built and shared by pointer, so copying a Value is cheap; only a namespace
// is mutable (`{% set ns.x = ... %}`), and it is shared by reference as in Python.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_VALUE_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace engram::jinja {

class Value;
class Dict;
struct Namespace;
struct CallArgs;
struct Callable;
using List = std::vector<Value>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  // Undefined; `hint` names what was looked up ("'foo' is undefined"), for error messages.
  Value() = default;
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value String(std::string s);
  static Value ListOf(List items, bool tuple = false);
  static Value DictOf(Dict d);
  static Value NewNamespace(Dict attrs);
  static Value Function(std::string name, std::function<absl::StatusOr<Value>(CallArgs&)> fn);
  // JSON → Value; strings are made valid UTF-8 (U+FFFD for bad bytes).
  template <typename JsonT>
  static Value FromJson(const JsonT& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  // bool, int or float (Python's numbers.Number: bool is an int).
  bool is_number() const {
    return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat;
  }
  bool is_integral() const { return kind_ == Kind::kBool || kind_ == Kind::kInt; }

  bool AsBool() const { return b_; }
  int64_t AsInt() const { return kind_ == Kind::kBool ? static_cast<int64_t>(b_) : i_; }
  double AsFloat() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(AsInt()); }
  const std::string& str() const { return s_; }
  const List& list() const { return *list_; }
  const Dict& dict() const { return *dict_; }
  Namespace& ns() const { return *ns_; }
  const Callable& callable() const { return *fn_; }
  const std::string& undefined_hint() const { return s_; }

  // Python truth value (Undefined is false).
  bool Truthy() const;
  // Python str() (Undefined prints as ""), and repr().
  std::string Str() const;
  std::string Repr() const;
  // Python type name for error messages ("str", "int", "dict", ...).
  std::string TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  bool tuple_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;  // string value, or the undefined hint
  std::shared_ptr<const List> list_;
  std::shared_ptr<const Dict> dict_;
  std::shared_ptr<Namespace> ns_;
  std::shared_ptr<const Callable> fn_;
};

// An insertion-ordered dict with string keys (template dicts are small: linear lookup).
class Dict {
 public:
  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value value);
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

// namespace(): the one mutable object, shared by every Value that refers to it.
struct Namespace {
  Dict attrs;
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// A macro or a builtin function. Errors are absl::Status (InvalidArgument: the template or
// its input is wrong; Unimplemented: a Python feature the engine lacks).
struct Callable {
  std::string name;
  std::function<absl::StatusOr<Value>(CallArgs&)> fn;
};

// Python ==.
bool Equal(const Value& a, const Value& b);
// Python a < b: numbers, strings, lists/tuples; anything else is a TypeError (error status).
absl::StatusOr<bool> Less(const Value& a, const Value& b);

struct JsonOptions {
  std::optional<int64_t> indent;  // nullopt: one line
  std::string item_sep = ", ";    // Python's defaults for indent=None
  std::string key_sep = ": ";
  bool ensure_ascii = false;
  bool sort_keys = false;
};
// json.dumps(value, ...) as Python writes it. Undefined and callables are not serializable.
absl::StatusOr<std::string> ToPyJson(const Value& v, const JsonOptions& opt);

template <typename JsonT>
Value Value::FromJson(const JsonT& j) {
  switch (j.type()) {
    case JsonT::value_t::null:
    case JsonT::value_t::discarded:
      return None();
    case JsonT::value_t::boolean:
      return Bool(j.template get<bool>());
    case JsonT::value_t::number_integer:
      return Int(j.template get<int64_t>());
    case JsonT::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Float(static_cast<double>(u));
      return Int(static_cast<int64_t>(u));
    }
    case JsonT::value_t::number_float:
      return Float(j.template get<double>());
    case JsonT::value_t::string:
      return String(j.template get<std::string>());
    case JsonT::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return ListOf(std::move(items));
    }
    case JsonT::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.Set(it.key(), FromJson(it.value()));
      return DictOf(std::move(d));
    }
    case JsonT::value_t::binary:
      break;
  }
  return None();
}

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_VALUE_H_
