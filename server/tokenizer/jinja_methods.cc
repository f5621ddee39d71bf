// Attribute and item access, iteration, str/dict methods and the globals of the chat-template
// engine (see jinja_builtins.h). Python's behaviour is the specification: error texts follow
// Python's where a template author would recognise them.
#include <algorithm>
#include <ctime>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_builtins.h"
#include "server/tokenizer/jinja_ops.h"
#include "server/tokenizer/jinja_pystr.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

Value StrList(const std::vector<std::string>& parts) {
  List items;
  items.reserve(parts.size());
  for (const auto& p : parts) items.push_back(Value::String(p));
  return Value::ListOf(std::move(items));
}

absl::StatusOr<std::string> NeedStr(const Value& v, std::string_view what) {
  if (!v.is_string()) return TypeError(StrCat(what, " must be str, not ", v.TypeName()));
  return v.str();
}

// Python's slice.indices() for a sequence of length n, then the selected positions.
absl::StatusOr<std::vector<size_t>> SlicePositions(int64_t n, const Value& start, const Value& stop,
                                                   const Value& step) {
  auto as_int = [](const Value& v, int64_t* out) -> absl::Status {
    if (v.is_undefined() || v.is_none()) return absl::OkStatus();
    if (!v.is_integral())
      return TypeError("slice indices must be integers or None or have an __index__ method");
    *out = v.AsInt();
    return absl::OkStatus();
  };
  int64_t st = 1;
  if (absl::Status s = as_int(step, &st); !s.ok()) return s;
  if (st == 0) return absl::InvalidArgumentError("ValueError: slice step cannot be zero");
  int64_t lo = st > 0 ? 0 : n - 1;
  int64_t hi = st > 0 ? n : -1;
  auto clamp = [&](int64_t v) {
    if (v < 0) v += n;
    if (st > 0) return std::clamp<int64_t>(v, 0, n);
    if (v < 0) return int64_t{-1};
    return std::min(v, n - 1);
  };
  int64_t a = lo, b = hi;
  if (!start.is_undefined() && !start.is_none()) {
    if (absl::Status s = as_int(start, &a); !s.ok()) return s;
    a = clamp(a);
  }
  if (!stop.is_undefined() && !stop.is_none()) {
    if (absl::Status s = as_int(stop, &b); !s.ok()) return s;
    b = clamp(b);
  }
  std::vector<size_t> out;
  for (int64_t i = a; st > 0 ? i < b : i > b; i += st) out.push_back(static_cast<size_t>(i));
  return out;
}

}  // namespace

absl::StatusOr<Value> ArgReader::Get(size_t index, std::string_view name, Value fallback) {
  positional_used_ = std::max(positional_used_, index + 1);
  if (index < args_.args.size()) {
    for (const auto& [k, v] : args_.kwargs)
      if (k == name)
        return TypeError(StrCat(fn_, "() got multiple values for argument '", name, "'"));
    return args_.args[index];
  }
  for (const auto& [k, v] : args_.kwargs) {
    if (k == name) {
      ++keywords_used_;
      return v;
    }
  }
  return fallback;
}

absl::Status ArgReader::Done() const {
  if (args_.args.size() > positional_used_)
    return TypeError(StrCat(fn_, "() takes at most ", positional_used_, " argument",
                            positional_used_ == 1 ? "" : "s", " (", args_.args.size(), " given)"));
  if (keywords_used_ < args_.kwargs.size())
    return TypeError(StrCat(fn_, "() got an unexpected keyword argument"));
  return absl::OkStatus();
}

absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined())
    return absl::InvalidArgumentError(StrCat("UndefinedError: ", obj.undefined_hint()));
  const Value* found = nullptr;
  if (obj.is_dict()) found = obj.dict().Find(name);
  if (obj.kind() == Value::Kind::kNamespace) found = obj.ns().attrs.Find(name);
  if (found != nullptr) return *found;
  const std::string type = obj.is_dict() ? "dict" : obj.TypeName();
  return Value::Undefined(StrCat("'", type, " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined())
    return absl::InvalidArgumentError(StrCat("UndefinedError: ", obj.undefined_hint()));
  if ((obj.is_list() || obj.is_string()) && key.is_integral()) {
    const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().size())
                                    : static_cast<int64_t>(CodePointCount(obj.str()));
    int64_t i = key.AsInt();
    if (i < 0) i += n;
    if (i >= 0 && i < n) {
      if (obj.is_list()) return obj.list()[static_cast<size_t>(i)];
      return Value::String(FromU32(ToU32(obj.str()).substr(static_cast<size_t>(i), 1)));
    }
    return Value::Undefined(StrCat(obj.TypeName(), " object has no element ", key.AsInt()));
  }
  if (key.is_string() && (obj.is_dict() || obj.kind() == Value::Kind::kNamespace))
    return GetAttr(obj, key.str());
  return Value::Undefined(StrCat("'", obj.TypeName(), " object' has no item ", key.Repr()));
}

absl::StatusOr<Value> GetSlice(const Value& obj, const Value& start, const Value& stop,
                               const Value& step) {
  if (obj.is_list()) {
    auto pos = SlicePositions(static_cast<int64_t>(obj.list().size()), start, stop, step);
    if (!pos.ok()) return pos.status();
    List items;
    for (size_t i : *pos) items.push_back(obj.list()[i]);
    return Value::ListOf(std::move(items), obj.is_tuple());
  }
  if (obj.is_string()) {
    const std::u32string u = ToU32(obj.str());
    auto pos = SlicePositions(static_cast<int64_t>(u.size()), start, stop, step);
    if (!pos.ok()) return pos.status();
    std::u32string out;
    for (size_t i : *pos) out.push_back(u[i]);
    return Value::String(FromU32(out));
  }
  if (obj.is_undefined())
    return absl::InvalidArgumentError(StrCat("UndefinedError: ", obj.undefined_hint()));
  return TypeError(StrCat("'", obj.TypeName(), "' object is not subscriptable"));
}

absl::StatusOr<List> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return List();
    case Value::Kind::kList:
      return v.list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& [k, _] : v.dict().items()) keys.push_back(Value::String(k));
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      for (char32_t c : ToU32(v.str())) chars.push_back(Value::String(FromU32({&c, 1})));
      return chars;
    }
    default:
      return TypeError(StrCat("'", v.TypeName(), "' object is not iterable"));
  }
}

bool IsMethod(std::string_view name) {
  static constexpr std::string_view kMethods[] = {
      "startswith",   "endswith",   "strip",   "lstrip",  "rstrip",  "split",
      "rsplit",       "splitlines", "upper",   "lower",   "title",   "capitalize",
      "replace",      "find",       "rfind",   "count",   "join",    "isdigit",
      "isalpha",      "isalnum",    "isspace", "isupper", "islower", "removeprefix",
      "removesuffix", "items",      "keys",    "values",  "get",     "cycle"};
  return std::find(std::begin(kMethods), std::end(kMethods), name) != std::end(kMethods);
}

absl::StatusOr<Value> CallMethod(const Value& obj, std::string_view name, const CallArgs& args) {
  ArgReader r(name, args);
  auto arg = [&](size_t i, std::string_view kw, Value fallback = Value()) {
    return r.Get(i, kw, std::move(fallback));
  };
  if (obj.is_dict()) {
    const Dict& d = obj.dict();
    if (name == "items" || name == "keys" || name == "values") {
      if (absl::Status st = r.Done(); !st.ok()) return st;
      List out;
      for (const auto& [k, v] : d.items()) {
        if (name == "items") {
          out.push_back(Value::ListOf({Value::String(k), v}, /*tuple=*/true));
        } else {
          out.push_back(name == "keys" ? Value::String(k) : v);
        }
      }
      return Value::ListOf(std::move(out));
    }
    if (name == "get") {
      auto key = arg(0, "key");
      auto fallback = arg(1, "default", Value::None());
      if (!key.ok()) return key.status();
      if (!fallback.ok()) return fallback.status();
      if (absl::Status st = r.Done(); !st.ok()) return st;
      const Value* v = key->is_string() ? d.Find(key->str()) : nullptr;
      return v != nullptr ? *v : *fallback;
    }
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    std::vector<Value> a;
    auto take = [&](std::initializer_list<std::string_view> names) -> absl::Status {
      size_t i = 0;
      for (std::string_view kw : names) {
        auto v = arg(i++, kw);
        if (!v.ok()) return v.status();
        a.push_back(*std::move(v));
      }
      return r.Done();
    };
    auto opt_str = [&](const Value& v) -> std::optional<std::string_view> {
      if (v.is_undefined() || v.is_none()) return std::nullopt;
      return std::string_view(v.str());
    };
    auto str_or_none = [&](const Value& v) -> absl::Status {
      if (v.is_undefined() || v.is_none() || v.is_string()) return absl::OkStatus();
      return TypeError(StrCat(name, "() argument must be str or None, not ", v.TypeName()));
    };
    if (name == "startswith" || name == "endswith") {
      if (absl::Status st = take({"prefix"}); !st.ok()) return st;
      List options = a[0].is_tuple() ? a[0].list() : List{a[0]};
      for (const Value& o : options) {
        auto p = NeedStr(o, StrCat(name, " first arg"));
        if (!p.ok()) return p.status();
        const bool hit = name == "startswith" ? s.starts_with(*p) : s.ends_with(*p);
        if (hit) return Value::Bool(true);
      }
      return Value::Bool(false);
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      if (absl::Status st = take({"chars"}); !st.ok()) return st;
      if (absl::Status st = str_or_none(a[0]); !st.ok()) return st;
      return Value::String(PyStrip(s, opt_str(a[0]), name != "rstrip", name != "lstrip"));
    }
    if (name == "split" || name == "rsplit") {
      if (absl::Status st = take({"sep", "maxsplit"}); !st.ok()) return st;
      if (absl::Status st = str_or_none(a[0]); !st.ok()) return st;
      if (a[0].is_string() && a[0].str().empty())
        return absl::InvalidArgumentError("ValueError: empty separator");
      int64_t maxsplit = -1;
      if (!a[1].is_undefined()) {
        if (!a[1].is_integral()) return TypeError("maxsplit must be an integer");
        maxsplit = a[1].AsInt();
      }
      return StrList(PySplit(s, opt_str(a[0]), maxsplit, name == "rsplit"));
    }
    if (name == "splitlines") {
      if (absl::Status st = take({"keepends"}); !st.ok()) return st;
      return StrList(PySplitLines(s, a[0].Truthy()));
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      if (absl::Status st = r.Done(); !st.ok()) return st;
      if (name == "upper") return Value::String(PyUpper(s));
      if (name == "lower") return Value::String(PyLower(s));
      if (name == "title") return Value::String(PyTitle(s));
      return Value::String(PyCapitalize(s));
    }
    if (name == "replace") {
      if (absl::Status st = take({"old", "new", "count"}); !st.ok()) return st;
      auto old = NeedStr(a[0], "replace() argument 1");
      auto repl = NeedStr(a[1], "replace() argument 2");
      if (!old.ok()) return old.status();
      if (!repl.ok()) return repl.status();
      const int64_t count = a[2].is_integral() ? a[2].AsInt() : -1;
      return Value::String(PyReplace(s, *old, *repl, count));
    }
    if (name == "find" || name == "rfind" || name == "count" || name == "removeprefix" ||
        name == "removesuffix") {
      if (absl::Status st = take({"sub"}); !st.ok()) return st;
      auto sub = NeedStr(a[0], StrCat(name, "() argument"));
      if (!sub.ok()) return sub.status();
      if (name == "count") return Value::Int(PyCount(s, *sub));
      if (name == "removeprefix")
        return Value::String(s.starts_with(*sub) ? s.substr(sub->size()) : s);
      if (name == "removesuffix")
        return Value::String(
            s.ends_with(*sub) && !sub->empty() ? s.substr(0, s.size() - sub->size()) : s);
      return Value::Int(PyFind(s, *sub, name == "rfind"));
    }
    if (name == "join") {
      if (absl::Status st = take({"iterable"}); !st.ok()) return st;
      auto items = Iterate(a[0]);
      if (!items.ok()) return items.status();
      std::string out;
      for (size_t i = 0; i < items->size(); ++i) {
        const Value& item = (*items)[i];
        if (!item.is_string())
          return TypeError(
              StrCat("sequence item ", i, ": expected str instance, ", item.TypeName(), " found"));
        if (i > 0) out += s;
        out += item.str();
      }
      return Value::String(std::move(out));
    }
    static constexpr std::pair<std::string_view, PyCharClass> kClasses[] = {
        {"isdigit", PyCharClass::kDigit}, {"isalpha", PyCharClass::kAlpha},
        {"isalnum", PyCharClass::kAlnum}, {"isspace", PyCharClass::kSpace},
        {"isupper", PyCharClass::kUpper}, {"islower", PyCharClass::kLower}};
    for (const auto& [m, cls] : kClasses) {
      if (name != m) continue;
      if (absl::Status st = r.Done(); !st.ok()) return st;
      return Value::Bool(PyIsClass(s, cls));
    }
  }
  if (obj.is_undefined())
    return absl::InvalidArgumentError(StrCat("UndefinedError: ", obj.undefined_hint()));
  return absl::InvalidArgumentError(
      StrCat("AttributeError: '", obj.TypeName(), "' object has no attribute '", name, "'"));
}

bool IsGlobal(std::string_view name) {
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception" ||
         name == "strftime_now";
}

Dict Globals() {
  Dict g;
  g.Set("range", Value::Function("range", [](CallArgs& a) -> absl::StatusOr<Value> {
          if (!a.kwargs.empty() || a.args.empty() || a.args.size() > 3)
            return TypeError("range expected 1 to 3 integer arguments");
          for (const Value& v : a.args)
            if (!v.is_integral())
              return TypeError(
                  StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
          int64_t start = 0, stop = a.args[0].AsInt(), step = 1;
          if (a.args.size() >= 2) start = a.args[0].AsInt(), stop = a.args[1].AsInt();
          if (a.args.size() == 3) step = a.args[2].AsInt();
          if (step == 0)
            return absl::InvalidArgumentError("ValueError: range() arg 3 must not be zero");
          List out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            // Jinja2's sandbox caps range() at MAX_RANGE = 100000 items.
            if (out.size() >= 100000)
              return absl::InvalidArgumentError(
                  "OverflowError: Range too big. The sandbox blocks "
                  "ranges larger than MAX_RANGE (100000).");
            out.push_back(Value::Int(i));
          }
          return Value::ListOf(std::move(out));
        }));
  auto make_dict = [](CallArgs& a, std::string_view fn) -> absl::StatusOr<Dict> {
    Dict d;
    if (a.args.size() > 1) return TypeError(StrCat(fn, " expected at most 1 argument"));
    if (a.args.size() == 1) {
      if (!a.args[0].is_dict()) return TypeError(StrCat(fn, "() argument must be a dict"));
      d = a.args[0].dict();
    }
    for (auto& [k, v] : a.kwargs) d.Set(k, v);
    return d;
  };
  g.Set("namespace",
        Value::Function("namespace", [make_dict](CallArgs& a) -> absl::StatusOr<Value> {
          auto d = make_dict(a, "namespace");
          if (!d.ok()) return d.status();
          return Value::NewNamespace(*std::move(d));
        }));
  g.Set("dict", Value::Function("dict", [make_dict](CallArgs& a) -> absl::StatusOr<Value> {
          auto d = make_dict(a, "dict");
          if (!d.ok()) return d.status();
          return Value::DictOf(*std::move(d));
        }));
  g.Set("raise_exception",
        Value::Function("raise_exception", [](CallArgs& a) -> absl::StatusOr<Value> {
          const std::string msg = a.args.empty() ? "" : a.args[0].Str();
          return absl::InvalidArgumentError(StrCat("raise_exception: ", msg));
        }));
  g.Set("strftime_now", Value::Function("strftime_now", [](CallArgs& a) -> absl::StatusOr<Value> {
          if (a.args.size() != 1 || !a.args[0].is_string())
            return TypeError("strftime_now() takes one format string");
          const std::time_t now = std::time(nullptr);
          std::tm tm{};
          localtime_r(&now, &tm);
          char buf[256];
          const size_t n = std::strftime(buf, sizeof buf, a.args[0].str().c_str(), &tm);
          return Value::String(std::string(buf, n));
        }));
  return g;
}

}  // namespace engram::jinja
