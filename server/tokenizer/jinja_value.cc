// Python semantics of template values; see jinja_value.h.
#include "server/tokenizer/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_pystr.h"
#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram::jinja {

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items_)
    if (k == key) return &v;
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

Value Value::Undefined(std::string hint) {
  Value v;
  v.s_ = std::move(hint);
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = d;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = IsValidUtf8(s) ? std::move(s) : Utf8Lossy(s);
  return v;
}

Value Value::ListOf(List items, bool tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.tuple_ = tuple;
  v.list_ = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::DictOf(Dict d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<const Dict>(std::move(d));
  return v;
}

Value Value::NewNamespace(Dict attrs) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ns_ = std::make_shared<Namespace>(Namespace{std::move(attrs)});
  return v;
}

Value Value::Function(std::string name, std::function<absl::StatusOr<Value>(CallArgs&)> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !s_.empty();
    case Kind::kList:
      return !list_->empty();
    case Kind::kDict:
      return dict_->size() != 0;
    case Kind::kNamespace:
    case Kind::kCallable:
      return true;
  }
  return false;
}

std::string Value::Str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return s_;
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return b_ ? "True" : "False";
    case Kind::kInt:
      return std::to_string(i_);
    case Kind::kFloat:
      return PyFloatRepr(f_);
    case Kind::kString:
      return PyRepr(s_);
    case Kind::kList: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < list_->size(); ++i) {
        if (i > 0) out += ", ";
        out += (*list_)[i].Repr();
      }
      if (tuple_ && list_->size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      const Dict& d = kind_ == Kind::kDict ? *dict_ : ns_->attrs;
      std::string out = kind_ == Kind::kDict ? "{" : "<Namespace {";
      bool first = true;
      for (const auto& [k, v] : d.items()) {
        if (!first) out += ", ";
        first = false;
        out += PyRepr(k) + ": " + v.Repr();
      }
      return out + (kind_ == Kind::kDict ? "}" : "}>");
    }
    case Kind::kCallable:
      return StrCat("<function ", fn_->name, ">");
  }
  return "";
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return tuple_ ? "tuple" : "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "";
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.AsInt() == b.AsInt();
    return a.AsFloat() == b.AsFloat();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.is_tuple() != b.is_tuple() || a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i)
        if (!Equal(a.list()[i], b.list()[i])) return false;
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().items()) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.ns() == &b.ns();
    case Value::Kind::kCallable:
      return &a.callable() == &b.callable();
    default:
      return false;
  }
}

absl::StatusOr<bool> Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.AsInt() < b.AsInt();
    return a.AsFloat() < b.AsFloat();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order = code points
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const List& x = a.list();
    const List& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equal(x[i], y[i])) continue;
      return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return absl::InvalidArgumentError(StrCat("'<' not supported between instances of '", a.TypeName(),
                                           "' and '", b.TypeName(), "'"));
}

namespace {

absl::Status JsonRec(const Value& v, const JsonOptions& opt, int depth, std::string* out) {
  auto newline = [&](int d) {
    if (!opt.indent) return;
    out->push_back('\n');
    out->append(static_cast<size_t>(std::max<int64_t>(0, *opt.indent) * d), ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      *out += "null";
      return absl::OkStatus();
    case Value::Kind::kBool:
      *out += v.AsBool() ? "true" : "false";
      return absl::OkStatus();
    case Value::Kind::kInt:
      *out += std::to_string(v.AsInt());
      return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double d = v.AsFloat();
      if (std::isnan(d)) {
        *out += "NaN";
      } else if (std::isinf(d)) {
        *out += d < 0 ? "-Infinity" : "Infinity";
      } else {
        *out += PyFloatRepr(d);
      }
      return absl::OkStatus();
    }
    case Value::Kind::kString:
      *out += PyJsonString(v.str(), opt.ensure_ascii);
      return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list().empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      out->push_back('[');
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i > 0) *out += opt.item_sep;
        newline(depth + 1);
        if (absl::Status st = JsonRec(v.list()[i], opt, depth + 1, out); !st.ok()) return st;
      }
      newline(depth);
      out->push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      if (v.kind() == Value::Kind::kNamespace)
        return absl::InvalidArgumentError("Object of type Namespace is not JSON serializable");
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : v.dict().items()) items.push_back(&item);
      if (opt.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](auto* x, auto* y) { return x->first < y->first; });
      if (items.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      out->push_back('{');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) *out += opt.item_sep;
        newline(depth + 1);
        *out += PyJsonString(items[i]->first, opt.ensure_ascii) + opt.key_sep;
        if (absl::Status st = JsonRec(items[i]->second, opt, depth + 1, out); !st.ok()) return st;
      }
      newline(depth);
      out->push_back('}');
      return absl::OkStatus();
    }
    case Value::Kind::kUndefined:
    case Value::Kind::kCallable:
      break;
  }
  return absl::InvalidArgumentError(
      StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
}

}  // namespace

absl::StatusOr<std::string> ToPyJson(const Value& v, const JsonOptions& opt) {
  std::string out;
  if (absl::Status st = JsonRec(v, opt, 0, &out); !st.ok()) return st;
  return out;
}

}  // namespace engram::jinja
