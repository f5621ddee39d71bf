// Jinja2's filters (jinja2/filters.py, version 3.1) for the chat-template engine, plus Hugging
// Face's tojson override (json.dumps with ensure_ascii=False and no HTML escaping). See
// jinja_builtins.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_builtins.h"
#include "server/tokenizer/jinja_ops.h"
#include "server/tokenizer/jinja_pystr.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

constexpr std::string_view kFilters[] = {
    "abs",      "attr",   "capitalize", "center",     "count",   "d",        "default",
    "dictsort", "e",      "escape",     "first",      "float",   "indent",   "int",
    "items",    "join",   "last",       "length",     "list",    "lower",    "map",
    "max",      "min",    "reject",     "rejectattr", "replace", "reverse",  "round",
    "safe",     "select", "selectattr", "sort",       "string",  "sum",      "title",
    "tojson",   "trim",   "truncate",   "unique",     "upper",   "wordcount"};

// Jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
absl::StatusOr<Value> AttrPath(const Value& item, const Value& path) {
  if (path.is_integral()) return GetItem(item, path);
  Value cur = item;
  for (const std::string& part : PySplit(path.Str(), ".", -1)) {
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    auto next = digits ? GetItem(cur, Value::Int(std::strtoll(part.c_str(), nullptr, 10)))
                       : GetItem(cur, Value::String(part));
    if (!next.ok()) return next.status();
    cur = *std::move(next);
  }
  return cur;
}

Value LowerIfStr(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.is_string() ? Value::String(PyLower(v.str())) : v;
}

// Sort key of an item: attribute path (or the item), lowercased unless case_sensitive.
absl::StatusOr<std::vector<std::pair<Value, Value>>> Keyed(const List& items,
                                                           const Value& attribute,
                                                           bool case_sensitive) {
  std::vector<std::pair<Value, Value>> out;
  for (const Value& item : items) {
    Value key = item;
    if (!attribute.is_undefined() && !attribute.is_none()) {
      auto k = AttrPath(item, attribute);
      if (!k.ok()) return k.status();
      key = *std::move(k);
    }
    out.emplace_back(LowerIfStr(key, case_sensitive), item);
  }
  return out;
}

absl::Status SortPairs(std::vector<std::pair<Value, Value>>* v, bool reverse) {
  absl::Status err;
  std::stable_sort(v->begin(), v->end(), [&](const auto& a, const auto& b) {
    auto lt = reverse ? Less(b.first, a.first) : Less(a.first, b.first);
    if (!lt.ok()) {
      if (err.ok()) err = lt.status();
      return false;
    }
    return *lt;
  });
  return err;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// Python's int(str) / float(str) as Jinja's int and float filters use them.
std::optional<int64_t> ParseInt(std::string_view s, int base) {
  const std::string t = PyStrip(s, std::nullopt, true, true);
  std::string digits;
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i] != '_' || (i > 0 && i + 1 < t.size())) digits.push_back(t[i]);
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return v;
}

std::optional<double> ParseFloat(std::string_view s) {
  const std::string t = PyStrip(s, std::nullopt, true, true);
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return v;
}

absl::StatusOr<Value> Round(const Value& v, int64_t precision, const std::string& method) {
  if (method != "common" && method != "ceil" && method != "floor")
    return absl::InvalidArgumentError("FilterArgumentError: method must be common, ceil or floor");
  if (!v.is_number()) return TypeError(StrCat("type ", v.TypeName(), " doesn't define __round__"));
  if (method == "common") {
    if (v.is_integral() && precision >= 0) return Value::Int(v.AsInt());
    if (precision >= 0 && precision < 300) {
      // printf rounds the exact binary value half-to-even, as Python's round() does.
      char buf[400];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), v.AsFloat());
      return Value::Float(std::strtod(buf, nullptr));
    }
    const double scale = std::pow(10.0, static_cast<double>(-precision));
    const double r = std::nearbyint(v.AsFloat() / scale) * scale;
    return v.is_integral() ? Value::Int(static_cast<int64_t>(r)) : Value::Float(r);
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.AsFloat() * scale;
  return Value::Float((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

std::string Indent(std::string s, const Value& width, bool first, bool blank) {
  const std::string ind =
      width.is_string()
          ? width.str()
          : std::string(
                static_cast<size_t>(std::max<int64_t>(0, width.is_integral() ? width.AsInt() : 4)),
                ' ');
  s += "\n";
  std::vector<std::string> lines = PySplitLines(s, false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i > 0 ? "\n" + ind : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? "" : ind) + lines[i];
  }
  return first ? ind + rv : rv;
}

}  // namespace

bool IsFilter(std::string_view name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& v, const CallArgs& args) {
  ArgReader r(name, args);
  const std::string n(name);
  // Arguments by position (after the subject) or keyword; errors propagate via `bad`.
  absl::Status bad;
  auto arg = [&](size_t i, std::string_view kw, Value fallback = Value()) {
    auto got = r.Get(i, kw, std::move(fallback));
    if (!got.ok()) {
      if (bad.ok()) bad = got.status();
      return Value();
    }
    return *std::move(got);
  };
  auto done = [&]() -> absl::Status { return bad.ok() ? r.Done() : bad; };

  if (n == "trim" || n == "upper" || n == "lower" || n == "title" || n == "capitalize" ||
      n == "string" || n == "safe" || n == "e" || n == "escape" || n == "wordcount") {
    const Value chars = n == "trim" ? arg(0, "chars") : Value();
    if (absl::Status st = done(); !st.ok()) return st;
    const std::string s = v.Str();
    if (n == "trim") {
      if (chars.is_string()) return Value::String(PyStrip(s, chars.str(), true, true));
      return Value::String(PyStrip(s, std::nullopt, true, true));
    }
    if (n == "upper") return Value::String(PyUpper(s));
    if (n == "lower") return Value::String(PyLower(s));
    if (n == "title") return Value::String(PyTitle(s));
    if (n == "capitalize") return Value::String(PyCapitalize(s));
    if (n == "e" || n == "escape") return Value::String(HtmlEscape(s));
    if (n == "wordcount") {
      int64_t words = 0;
      bool in_word = false;
      for (char32_t c : ToU32(s)) {
        const std::string ch = FromU32({&c, 1});
        const bool w = c == U'_' || PyIsClass(ch, PyCharClass::kAlnum);
        words += w && !in_word;
        in_word = w;
      }
      return Value::Int(words);
    }
    if (n == "safe" && !v.is_string()) return v;
    return Value::String(s);
  }
  if (n == "length" || n == "count") {
    if (absl::Status st = done(); !st.ok()) return st;
    if (v.is_string()) return Value::Int(static_cast<int64_t>(CodePointCount(v.str())));
    if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
    if (v.is_dict()) return Value::Int(static_cast<int64_t>(v.dict().size()));
    if (v.is_undefined()) return Value::Int(0);
    return TypeError(StrCat("object of type '", v.TypeName(), "' has no len()"));
  }
  if (n == "tojson") {
    const Value ensure_ascii = arg(0, "ensure_ascii", Value::Bool(false));
    const Value indent = arg(1, "indent", Value::None());
    const Value separators = arg(2, "separators", Value::None());
    const Value sort_keys = arg(3, "sort_keys", Value::Bool(false));
    if (absl::Status st = done(); !st.ok()) return st;
    JsonOptions opt;
    opt.ensure_ascii = ensure_ascii.Truthy();
    opt.sort_keys = sort_keys.Truthy();
    if (!indent.is_none() && !indent.is_undefined()) {
      if (!indent.is_integral()) return TypeError("tojson: indent must be an integer");
      opt.indent = indent.AsInt();
      opt.item_sep = ",";
    }
    if (separators.is_list() && separators.list().size() == 2) {
      opt.item_sep = separators.list()[0].Str();
      opt.key_sep = separators.list()[1].Str();
    }
    auto text = ToPyJson(v, opt);
    if (!text.ok()) return TypeError(std::string(text.status().message()));
    return Value::String(*std::move(text));
  }
  if (n == "default" || n == "d") {
    const Value fallback = arg(0, "default_value", Value::String(""));
    const Value boolean = arg(1, "boolean", Value::Bool(false));
    if (absl::Status st = done(); !st.ok()) return st;
    if (v.is_undefined() || (boolean.Truthy() && !v.Truthy())) return fallback;
    return v;
  }
  if (n == "replace") {
    const Value old = arg(0, "old"), repl = arg(1, "new"), count = arg(2, "count", Value::None());
    if (absl::Status st = done(); !st.ok()) return st;
    return Value::String(
        PyReplace(v.Str(), old.Str(), repl.Str(), count.is_integral() ? count.AsInt() : -1));
  }
  if (n == "indent") {
    const Value width = arg(0, "width", Value::Int(4));
    const Value first = arg(1, "first", Value::Bool(false));
    const Value blank = arg(2, "blank", Value::Bool(false));
    if (absl::Status st = done(); !st.ok()) return st;
    return Value::String(Indent(v.Str(), width, first.Truthy(), blank.Truthy()));
  }
  if (n == "center") {
    const Value width = arg(0, "width", Value::Int(80));
    if (absl::Status st = done(); !st.ok()) return st;
    const std::string s = v.Str();
    const int64_t len = static_cast<int64_t>(CodePointCount(s));
    const int64_t w = width.is_integral() ? width.AsInt() : 80;
    if (w <= len) return Value::String(s);
    const int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
    return Value::String(std::string(static_cast<size_t>(left), ' ') + s +
                         std::string(static_cast<size_t>(marg - left), ' '));
  }
  if (n == "truncate") {
    const Value length = arg(0, "length", Value::Int(255));
    const Value killwords = arg(1, "killwords", Value::Bool(false));
    const Value end = arg(2, "end", Value::String("..."));
    const Value leeway = arg(3, "leeway", Value::Int(5));
    if (absl::Status st = done(); !st.ok()) return st;
    const std::u32string s = ToU32(v.Str());
    const std::u32string e = ToU32(end.Str());
    const int64_t len = length.is_integral() ? length.AsInt() : 255;
    if (len < static_cast<int64_t>(e.size()))
      return absl::InvalidArgumentError("AssertionError: truncate: length < len(end)");
    if (static_cast<int64_t>(s.size()) <= len + (leeway.is_integral() ? leeway.AsInt() : 5))
      return Value::String(FromU32(s));
    std::u32string cut = s.substr(0, static_cast<size_t>(len) - e.size());
    if (!killwords.Truthy()) {
      const size_t sp = cut.rfind(U' ');
      if (sp != std::u32string::npos) cut.resize(sp);
    }
    return Value::String(FromU32(cut + e));
  }
  if (n == "int" || n == "float") {
    const Value fallback = arg(0, "default", n == "int" ? Value::Int(0) : Value::Float(0));
    const Value base = n == "int" ? arg(1, "base", Value::Int(10)) : Value();
    if (absl::Status st = done(); !st.ok()) return st;
    if (n == "float") {
      if (v.is_number()) return Value::Float(v.AsFloat());
      if (v.is_string())
        if (auto f = ParseFloat(v.str())) return Value::Float(*f);
      return fallback;
    }
    if (v.is_integral()) return Value::Int(v.AsInt());
    if (v.kind() == Value::Kind::kFloat && std::isfinite(v.AsFloat()))
      return Value::Int(static_cast<int64_t>(v.AsFloat()));
    if (v.is_string()) {
      if (auto i = ParseInt(v.str(), static_cast<int>(base.AsInt()))) return Value::Int(*i);
      if (auto f = ParseFloat(v.str()); f && std::isfinite(*f))
        return Value::Int(static_cast<int64_t>(*f));
    }
    return fallback;
  }
  if (n == "abs") {
    if (absl::Status st = done(); !st.ok()) return st;
    if (v.is_integral()) return Value::Int(v.AsInt() < 0 ? -v.AsInt() : v.AsInt());
    if (v.is_number()) return Value::Float(std::fabs(v.AsFloat()));
    return TypeError(StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
  }
  if (n == "round") {
    const Value precision = arg(0, "precision", Value::Int(0));
    const Value method = arg(1, "method", Value::String("common"));
    if (absl::Status st = done(); !st.ok()) return st;
    return Round(v, precision.is_integral() ? precision.AsInt() : 0, method.Str());
  }
  if (n == "attr") {
    const Value attr_name = arg(0, "name");
    if (absl::Status st = done(); !st.ok()) return st;
    // Python getattr(): a dict's keys are not attributes; a namespace's are.
    if (v.kind() == Value::Kind::kNamespace) return GetAttr(v, attr_name.Str());
    if (v.is_undefined()) return GetAttr(v, attr_name.Str());
    return Value::Undefined(
        StrCat("'", v.TypeName(), " object' has no attribute '", attr_name.Str(), "'"));
  }

  // Filters over a sequence.
  auto items = Iterate(v);
  if (!items.ok()) return items.status();
  if (n == "list") {
    if (absl::Status st = done(); !st.ok()) return st;
    return Value::ListOf(*std::move(items));
  }
  if (n == "first" || n == "last") {
    if (absl::Status st = done(); !st.ok()) return st;
    if (items->empty()) return Value::Undefined(StrCat("No ", n, " item, sequence was empty."));
    return n == "first" ? items->front() : items->back();
  }
  if (n == "reverse") {
    if (absl::Status st = done(); !st.ok()) return st;
    if (v.is_string()) {
      std::u32string u = ToU32(v.str());
      std::reverse(u.begin(), u.end());
      return Value::String(FromU32(u));
    }
    std::reverse(items->begin(), items->end());
    return Value::ListOf(*std::move(items));
  }
  if (n == "join") {
    const Value sep = arg(0, "d", Value::String(""));
    const Value attribute = arg(1, "attribute", Value::None());
    if (absl::Status st = done(); !st.ok()) return st;
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      Value item = (*items)[i];
      if (!attribute.is_none()) {
        auto a = AttrPath(item, attribute);
        if (!a.ok()) return a.status();
        item = *std::move(a);
      }
      if (i > 0) out += sep.Str();
      out += item.Str();
    }
    return Value::String(std::move(out));
  }
  if (n == "items") {
    if (absl::Status st = done(); !st.ok()) return st;
    if (v.is_undefined()) return Value::ListOf({});
    if (!v.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
    return CallMethod(v, "items", {});
  }
  if (n == "map") {
    const Value attribute = [&] {
      for (const auto& [k, val] : args.kwargs)
        if (k == "attribute") return val;
      return Value();
    }();
    List out;
    if (!attribute.is_undefined()) {
      Value fallback;
      for (const auto& [k, val] : args.kwargs) {
        if (k == "default") {
          fallback = val;
        } else if (k != "attribute") {
          return TypeError(StrCat("map() got an unexpected keyword argument '", k, "'"));
        }
      }
      if (!args.args.empty())
        return TypeError("map() takes no positional arguments with attribute=");
      for (const Value& item : *items) {
        auto a = AttrPath(item, attribute);
        if (!a.ok()) return a.status();
        out.push_back(a->is_undefined() && !fallback.is_undefined() ? fallback : *a);
      }
      return Value::ListOf(std::move(out));
    }
    if (args.args.empty()) return TypeError("map requires a filter argument");
    CallArgs rest{{args.args.begin() + 1, args.args.end()}, args.kwargs};
    for (const Value& item : *items) {
      auto mapped = ApplyFilter(args.args[0].Str(), item, rest);
      if (!mapped.ok()) return mapped.status();
      out.push_back(*std::move(mapped));
    }
    return Value::ListOf(std::move(out));
  }
  if (n == "select" || n == "reject" || n == "selectattr" || n == "rejectattr") {
    const bool by_attr = n == "selectattr" || n == "rejectattr";
    const bool keep = n == "select" || n == "selectattr";
    size_t at = 0;
    Value attribute;
    if (by_attr) {
      if (args.args.empty()) return TypeError(StrCat(n, " requires an attribute name"));
      attribute = args.args[at++];
    }
    const bool has_test = args.args.size() > at;
    const std::string test = has_test ? args.args[at].Str() : "";
    CallArgs rest{
        {args.args.begin() + static_cast<std::ptrdiff_t>(at + (has_test ? 1 : 0)), args.args.end()},
        args.kwargs};
    if (has_test && !IsTest(test))
      return absl::UnimplementedError(StrCat("unsupported test '", test, "' in ", n));
    List out;
    for (const Value& item : *items) {
      Value subject = item;
      if (by_attr) {
        auto a = AttrPath(item, attribute);
        if (!a.ok()) return a.status();
        subject = *std::move(a);
      }
      bool pass = subject.Truthy();
      if (has_test) {
        auto t = ApplyTest(test, subject, rest);
        if (!t.ok()) return t.status();
        pass = *t;
      }
      if (pass == keep) out.push_back(item);
    }
    return Value::ListOf(std::move(out));
  }
  if (n == "sort" || n == "unique" || n == "min" || n == "max") {
    const Value reverse = n == "sort" ? arg(0, "reverse", Value::Bool(false)) : Value();
    const Value case_sensitive = arg(n == "sort" ? 1 : 0, "case_sensitive", Value::Bool(false));
    const Value attribute = arg(n == "sort" ? 2 : 1, "attribute", Value::None());
    if (absl::Status st = done(); !st.ok()) return st;
    auto keyed = Keyed(*items, attribute, case_sensitive.Truthy());
    if (!keyed.ok()) return keyed.status();
    List out;
    if (n == "unique") {
      std::vector<Value> seen;
      for (const auto& entry : *keyed) {
        const Value& key = entry.first;
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equal(s, key); }))
          continue;
        seen.push_back(key);
        out.push_back(entry.second);
      }
      return Value::ListOf(std::move(out));
    }
    if (absl::Status st = SortPairs(&*keyed, n == "sort" ? reverse.Truthy() : n == "max"); !st.ok())
      return st;
    if (n != "sort") {
      if (keyed->empty())
        return Value::Undefined(StrCat("No aggregated item, sequence was empty."));
      return keyed->front().second;
    }
    for (auto& [key, item] : *keyed) out.push_back(std::move(item));
    return Value::ListOf(std::move(out));
  }
  if (n == "dictsort") {
    const Value case_sensitive = arg(0, "case_sensitive", Value::Bool(false));
    const Value by = arg(1, "by", Value::String("key"));
    const Value reverse = arg(2, "reverse", Value::Bool(false));
    if (absl::Status st = done(); !st.ok()) return st;
    if (!v.is_dict()) return TypeError("dictsort: expected a mapping");
    std::vector<std::pair<Value, Value>> keyed;
    for (const auto& [k, val] : v.dict().items()) {
      const Value key = by.Str() == "value" ? val : Value::String(k);
      keyed.emplace_back(LowerIfStr(key, case_sensitive.Truthy()),
                         Value::ListOf({Value::String(k), val}, true));
    }
    if (absl::Status st = SortPairs(&keyed, reverse.Truthy()); !st.ok()) return st;
    List out;
    for (auto& [key, item] : keyed) out.push_back(std::move(item));
    return Value::ListOf(std::move(out));
  }
  if (n == "sum") {
    const Value attribute = arg(0, "attribute", Value::None());
    Value total = arg(1, "start", Value::Int(0));
    if (absl::Status st = done(); !st.ok()) return st;
    for (const Value& item : *items) {
      Value x = item;
      if (!attribute.is_none()) {
        auto a = AttrPath(item, attribute);
        if (!a.ok()) return a.status();
        x = *std::move(a);
      }
      if (!x.is_number() || !total.is_number())
        return TypeError(StrCat("unsupported operand type(s) for +: '", total.TypeName(), "' and '",
                                x.TypeName(), "'"));
      total = total.is_integral() && x.is_integral() ? Value::Int(total.AsInt() + x.AsInt())
                                                     : Value::Float(total.AsFloat() + x.AsFloat());
    }
    return total;
  }
  return absl::UnimplementedError(StrCat("unsupported filter '", n, "'"));
}

}  // namespace engram::jinja
