// Python operator semantics for template values; see jinja_ops.h.
#include "server/tokenizer/jinja_ops.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "server/util/str_cat.h"

namespace engram::jinja {

absl::Status TypeError(std::string_view message) {
  return absl::InvalidArgumentError(StrCat("TypeError: ", message));
}

absl::Status UndefinedError(const Value& v) {
  return absl::InvalidArgumentError(StrCat("UndefinedError: ", v.undefined_hint()));
}

absl::Status Overflow() {
  return absl::UnimplementedError(
      "integer overflow: Python integers are unbounded, this engine's are 64-bit");
}

absl::StatusOr<Value> Arith(const std::string& op, const Value& l, const Value& r) {
  if (op == "~") return Value::String(l.Str() + r.Str());
  if (l.is_undefined()) return UndefinedError(l);
  if (r.is_undefined()) return UndefinedError(r);
  auto unsupported = [&] {
    return TypeError(StrCat("unsupported operand type(s) for ", op, ": '", l.TypeName(), "' and '",
                            r.TypeName(), "'"));
  };
  if (l.is_number() && r.is_number()) {
    const bool ints = l.is_integral() && r.is_integral();
    const int64_t a = l.AsInt(), b = r.AsInt();
    const double x = l.AsFloat(), y = r.AsFloat();
    int64_t out = 0;
    if (op == "+") {
      if (!ints) return Value::Float(x + y);
      if (__builtin_add_overflow(a, b, &out)) return Overflow();
      return Value::Int(out);
    }
    if (op == "-") {
      if (!ints) return Value::Float(x - y);
      if (__builtin_sub_overflow(a, b, &out)) return Overflow();
      return Value::Int(out);
    }
    if (op == "*") {
      if (!ints) return Value::Float(x * y);
      if (__builtin_mul_overflow(a, b, &out)) return Overflow();
      return Value::Int(out);
    }
    if (op == "/" || op == "//" || op == "%") {
      if (ints ? b == 0 : y == 0)
        return absl::InvalidArgumentError(StrCat(
            "ZeroDivisionError: ", op == "/" ? "division by zero" : "integer modulo by zero"));
      if (op == "/") return Value::Float(x / y);
      if (ints) {
        if (a == INT64_MIN && b == -1) return Overflow();
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {
          --q;
          m += b;
        }
        return Value::Int(op == "//" ? q : m);
      }
      // CPython's float_divmod.
      double m = std::fmod(x, y);
      double div = (x - m) / y;
      if (m != 0 && ((y < 0) != (m < 0))) {
        m += y;
        div -= 1.0;
      }
      if (op == "%") return Value::Float(m != 0 ? m : std::copysign(0.0, y));
      if (div == 0) return Value::Float(std::copysign(0.0, x / y));
      double floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
      return Value::Float(floordiv);
    }
    if (op == "**") {
      if (ints && b >= 0) {
        int64_t result = 1, base = a;
        for (int64_t e = b; e > 0; e >>= 1) {
          if ((e & 1) && __builtin_mul_overflow(result, base, &result)) return Overflow();
          if (e > 1 && __builtin_mul_overflow(base, base, &base)) return Overflow();
        }
        return Value::Int(result);
      }
      return Value::Float(std::pow(x, y));
    }
  }
  if (op == "+") {
    if (l.is_string() && r.is_string()) return Value::String(l.str() + r.str());
    if (l.is_list() && r.is_list() && l.is_tuple() == r.is_tuple()) {
      List items = l.list();
      items.insert(items.end(), r.list().begin(), r.list().end());
      return Value::ListOf(std::move(items), l.is_tuple());
    }
    if (l.is_string())
      return TypeError(StrCat("can only concatenate str (not \"", r.TypeName(), "\") to str"));
    return unsupported();
  }
  if (op == "*" && (l.is_string() || l.is_list() || r.is_string() || r.is_list())) {
    const Value& seq = l.is_string() || l.is_list() ? l : r;
    const Value& n = &seq == &l ? r : l;
    if (!n.is_integral())
      return TypeError(StrCat("can't multiply sequence by non-int of type '", n.TypeName(), "'"));
    const int64_t times = std::max<int64_t>(0, n.AsInt());
    if (times > (int64_t{1} << 24)) return Overflow();
    if (seq.is_string()) {
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += seq.str();
      return Value::String(std::move(out));
    }
    List items;
    for (int64_t i = 0; i < times; ++i)
      items.insert(items.end(), seq.list().begin(), seq.list().end());
    return Value::ListOf(std::move(items), seq.is_tuple());
  }
  if (op == "%" && l.is_string())
    return absl::UnimplementedError("unsupported printf-style string formatting ('...' % args)");
  return unsupported();
}

absl::StatusOr<bool> Compare(const std::string& op, const Value& l, const Value& r) {
  if (op == "==") return Equal(l, r);
  if (op == "!=") return !Equal(l, r);
  if (op == "in" || op == "not in") {
    auto in = Contains(r, l);
    if (!in.ok()) return in.status();
    return op == "in" ? *in : !*in;
  }
  if (l.is_undefined()) return UndefinedError(l);
  if (r.is_undefined()) return UndefinedError(r);
  const bool swap = op == ">" || op == "<=";
  auto lt = swap ? Less(r, l) : Less(l, r);
  if (!lt.ok()) return lt.status();
  return op == "<" || op == ">" ? *lt : !*lt;
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string())
      return TypeError(
          StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
    return container.str().find(item.str()) != std::string::npos;
  }
  if (container.is_dict()) return item.is_string() && container.dict().Find(item.str()) != nullptr;
  if (container.is_list()) {
    for (const Value& v : container.list())
      if (Equal(v, item)) return true;
    return false;
  }
  if (container.is_undefined()) return false;
  return TypeError(StrCat("argument of type '", container.TypeName(), "' is not iterable"));
}

}  // namespace engram::jinja
