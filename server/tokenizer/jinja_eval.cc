// Tree-walking evaluator of the chat-template engine; see jinja_eval.h.
#include "server/tokenizer/jinja_eval.h"

#include <cmath>
#include <map>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_builtins.h"
#include "server/tokenizer/jinja_lexer.h"
#include "server/tokenizer/jinja_ops.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

struct Frame : std::enable_shared_from_this<Frame> {
  std::shared_ptr<Frame> parent;
  std::map<std::string, Value, std::less<>> vars;

  const Value* Lookup(std::string_view name) const {
    for (const Frame* f = this; f != nullptr; f = f->parent.get()) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { kNormal, kBreak, kContinue };

constexpr int kMaxMacroDepth = 64;

class Evaluator {
 public:
  explicit Evaluator(const Template& t) : t_(t) {}

  absl::StatusOr<std::string> Run(const Dict& context) {
    auto globals = std::make_shared<Frame>();
    const Dict builtins = Globals();
    for (const auto& [k, v] : builtins.items()) globals->vars[k] = v;
    auto top = std::make_shared<Frame>();
    top->parent = globals;
    for (const auto& [k, v] : context.items()) top->vars[k] = v;
    std::string out;
    Flow flow = Flow::kNormal;
    absl::Status st = Exec(t_.body, top, &out, &flow);
    if (st.ok()) return out;
    const std::string where = err_pos_ == std::string::npos ? "" : Where(t_.source, err_pos_);
    return absl::Status(st.code(),
                        StrCat(where, where.empty() ? "" : ": ", std::string(st.message())));
  }

 private:
  absl::Status Note(absl::Status st, size_t pos) {
    if (!st.ok() && err_pos_ == std::string::npos) err_pos_ = pos;
    return st;
  }

  absl::Status Exec(const Body& body, const FramePtr& f, std::string* out, Flow* flow) {
    for (const StmtPtr& s : body) {
      if (absl::Status st = Note(ExecOne(*s, f, out, flow), s->pos); !st.ok()) return st;
      if (*flow != Flow::kNormal) return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status Bind(const Stmt& s, const Value& v, Frame* f) {
    if (!s.unpack) {
      f->vars[s.targets[0]] = v;
      return absl::OkStatus();
    }
    auto items = Iterate(v);
    if (!items.ok()) return TypeError(StrCat("cannot unpack non-iterable ", v.TypeName()));
    if (items->size() != s.targets.size())
      return absl::InvalidArgumentError(
          StrCat("ValueError: ", items->size() < s.targets.size() ? "not enough" : "too many",
                 " values to unpack (expected ", s.targets.size(), ", got ", items->size(), ")"));
    for (size_t i = 0; i < items->size(); ++i) f->vars[s.targets[i]] = (*items)[i];
    return absl::OkStatus();
  }

  absl::Status ExecOne(const Stmt& s, const FramePtr& f, std::string* out, Flow* flow) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        out->append(s.text);
        return absl::OkStatus();
      case Stmt::Kind::kOutput: {
        auto v = Eval(*s.expr, f);
        if (!v.ok()) return v.status();
        out->append(v->Str());
        return absl::OkStatus();
      }
      case Stmt::Kind::kIf:
        for (const auto& [cond, body] : s.branches) {
          auto c = Eval(*cond, f);
          if (!c.ok()) return c.status();
          if (c->Truthy()) return Exec(body, f, out, flow);
        }
        return Exec(s.else_body, f, out, flow);
      case Stmt::Kind::kFor:
        return ExecFor(s, f, out);
      case Stmt::Kind::kSet: {
        auto v = Eval(*s.expr, f);
        if (!v.ok()) return v.status();
        if (s.attr.empty()) return Bind(s, *v, f.get());
        const Value* ns = f->Lookup(s.targets[0]);
        if (ns == nullptr || ns->kind() != Value::Kind::kNamespace)
          return absl::InvalidArgumentError(
              "TemplateRuntimeError: cannot assign attribute on non-namespace object");
        ns->ns().attrs.Set(s.attr, *std::move(v));
        return absl::OkStatus();
      }
      case Stmt::Kind::kSetBlock:
      case Stmt::Kind::kFilterBlock: {
        std::string buf;
        Flow inner = Flow::kNormal;
        auto child = std::make_shared<Frame>();
        child->parent = f;
        if (absl::Status st = Exec(s.body, child, &buf, &inner); !st.ok()) return st;
        Value v = Value::String(std::move(buf));
        if (s.expr) {
          auto filtered = EvalFilter(*s.expr, f, &v);
          if (!filtered.ok()) return filtered.status();
          v = *std::move(filtered);
        }
        if (s.kind == Stmt::Kind::kFilterBlock) {
          out->append(v.Str());
          return absl::OkStatus();
        }
        f->vars[s.targets[0]] = std::move(v);
        return absl::OkStatus();
      }
      case Stmt::Kind::kMacro:
        f->vars[s.name] = MakeMacro(s, f);
        return absl::OkStatus();
      case Stmt::Kind::kWith: {
        auto child = std::make_shared<Frame>();
        child->parent = f;
        for (const auto& [name, expr] : s.params) {
          auto v = Eval(*expr, f);
          if (!v.ok()) return v.status();
          child->vars[name] = *std::move(v);
        }
        return Exec(s.body, child, out, flow);
      }
      case Stmt::Kind::kBreak:
        *flow = Flow::kBreak;
        return absl::OkStatus();
      case Stmt::Kind::kContinue:
        *flow = Flow::kContinue;
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status ExecFor(const Stmt& s, const FramePtr& f, std::string* out) {
    auto iterable = Eval(*s.expr, f);
    if (!iterable.ok()) return iterable.status();
    auto all = Iterate(*iterable);
    if (!all.ok()) return all.status();
    List items;
    if (s.cond) {
      for (const Value& item : *all) {
        auto probe = std::make_shared<Frame>();
        probe->parent = f;
        if (absl::Status st = Bind(s, item, probe.get()); !st.ok()) return st;
        auto keep = Eval(*s.cond, probe);
        if (!keep.ok()) return keep.status();
        if (keep->Truthy()) items.push_back(item);
      }
    } else {
      items = *std::move(all);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      auto child = std::make_shared<Frame>();
      child->parent = f;
      if (absl::Status st = Bind(s, items[static_cast<size_t>(i)], child.get()); !st.ok())
        return st;
      Dict loop;
      loop.Set("index", Value::Int(i + 1));
      loop.Set("index0", Value::Int(i));
      loop.Set("revindex", Value::Int(n - i));
      loop.Set("revindex0", Value::Int(n - i - 1));
      loop.Set("first", Value::Bool(i == 0));
      loop.Set("last", Value::Bool(i == n - 1));
      loop.Set("length", Value::Int(n));
      loop.Set("depth", Value::Int(1));
      loop.Set("depth0", Value::Int(0));
      loop.Set("previtem", i > 0 ? items[static_cast<size_t>(i - 1)]
                                 : Value::Undefined("there is no previous item"));
      loop.Set("nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)]
                                     : Value::Undefined("there is no next item"));
      loop.Set("cycle", Value::Function("cycle", [i](CallArgs& a) -> absl::StatusOr<Value> {
                 if (a.args.empty()) return TypeError("no items for cycling given");
                 return a.args[static_cast<size_t>(i) % a.args.size()];
               }));
      child->vars["loop"] = Value::DictOf(std::move(loop));
      Flow flow = Flow::kNormal;
      if (absl::Status st = Exec(s.body, child, out, &flow); !st.ok()) return st;
      if (flow == Flow::kBreak) break;
    }
    if (n == 0) {
      Flow flow = Flow::kNormal;
      auto child = std::make_shared<Frame>();
      child->parent = f;
      return Exec(s.else_body, child, out, &flow);
    }
    return absl::OkStatus();
  }

  // The macro's callable refers to its defining frame without owning it (the frame holds the
  // callable: owning would be a cycle); macro_frames_ keeps such frames alive for the render.
  Value MakeMacro(const Stmt& s, const FramePtr& defining_frame) {
    macro_frames_.push_back(defining_frame);
    Frame* defining = defining_frame.get();
    return Value::Function(s.name, [this, &s, defining](CallArgs& a) -> absl::StatusOr<Value> {
      if (depth_ >= kMaxMacroDepth)
        return absl::InvalidArgumentError(
            StrCat("RecursionError: macro calls nested deeper than ", kMaxMacroDepth));
      auto child = std::make_shared<Frame>();
      child->parent = defining->shared_from_this();
      List varargs;
      for (size_t i = 0; i < a.args.size(); ++i) {
        if (i < s.params.size()) {
          child->vars[s.params[i].first] = a.args[i];
        } else {
          varargs.push_back(a.args[i]);
        }
      }
      Dict kwargs;
      for (const auto& [k, v] : a.kwargs) {
        bool is_param = false;
        for (size_t i = 0; i < s.params.size(); ++i) {
          if (s.params[i].first != k) continue;
          if (i < a.args.size())
            return TypeError(
                StrCat("macro '", s.name, "' got multiple values for argument '", k, "'"));
          child->vars[k] = v;
          is_param = true;
        }
        if (!is_param) kwargs.Set(k, v);
      }
      for (const auto& [name, def] : s.params) {
        if (child->vars.count(name)) continue;
        if (!def) {
          child->vars[name] = Value::Undefined(StrCat("parameter '", name, "' was not provided"));
          continue;
        }
        auto v = Eval(*def, child);
        if (!v.ok()) return v.status();
        child->vars[name] = *std::move(v);
      }
      child->vars["varargs"] = Value::ListOf(std::move(varargs), /*tuple=*/true);
      child->vars["kwargs"] = Value::DictOf(std::move(kwargs));
      std::string buf;
      Flow flow = Flow::kNormal;
      ++depth_;
      absl::Status st = Exec(s.body, child, &buf, &flow);
      --depth_;
      if (!st.ok()) return st;
      return Value::String(std::move(buf));
    });
  }

  absl::StatusOr<CallArgs> Args(const Expr& e, size_t first, const FramePtr& f) {
    CallArgs a;
    for (size_t i = first; i < e.children.size(); ++i) {
      auto v = Eval(*e.children[i], f);
      if (!v.ok()) return v.status();
      a.args.push_back(*std::move(v));
    }
    for (const auto& [k, expr] : e.kwargs) {
      auto v = Eval(*expr, f);
      if (!v.ok()) return v.status();
      a.kwargs.emplace_back(k, *std::move(v));
    }
    return a;
  }

  // A filter node; `block` is the subject of a filter block / block set (children[0] null).
  absl::StatusOr<Value> EvalFilter(const Expr& e, const FramePtr& f, const Value* block) {
    absl::StatusOr<Value> subject = Value();
    if (e.children[0] == nullptr) {
      subject = *block;
    } else if (e.children[0]->kind == Expr::Kind::kFilter && block != nullptr) {
      subject = EvalFilter(*e.children[0], f, block);
    } else {
      subject = Eval(*e.children[0], f);
    }
    if (!subject.ok()) return subject;
    auto args = Args(e, 1, f);
    if (!args.ok()) return args.status();
    auto r = ApplyFilter(e.name, *subject, *args);
    if (!r.ok()) Note(r.status(), e.pos).IgnoreError();
    return r;
  }

  absl::StatusOr<Value> Eval(const Expr& e, const FramePtr& f) {
    absl::StatusOr<Value> v = EvalInner(e, f);
    if (!v.ok()) Note(v.status(), e.pos).IgnoreError();
    return v;
  }

  absl::StatusOr<Value> EvalInner(const Expr& e, const FramePtr& f) {
    auto child = [&](size_t i) -> absl::StatusOr<Value> {
      if (e.children[i] == nullptr) return Value();
      return Eval(*e.children[i], f);
    };
    switch (e.kind) {
      case Expr::Kind::kConst:
        return e.value;
      case Expr::Kind::kName: {
        const Value* v = f->Lookup(e.name);
        return v != nullptr ? *v : Value::Undefined(StrCat("'", e.name, "' is undefined"));
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        auto a = Args(e, 0, f);
        if (!a.ok()) return a.status();
        return Value::ListOf(std::move(a->args), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          auto k = child(i);
          if (!k.ok()) return k;
          if (!k->is_string())
            return absl::UnimplementedError(
                StrCat("unsupported dict key of type ", k->TypeName(), " (only str keys)"));
          auto v = child(i + 1);
          if (!v.ok()) return v;
          d.Set(k->str(), *std::move(v));
        }
        return Value::DictOf(std::move(d));
      }
      case Expr::Kind::kGetAttr: {
        auto obj = child(0);
        if (!obj.ok()) return obj;
        return GetAttr(*obj, e.name);
      }
      case Expr::Kind::kGetItem: {
        auto obj = child(0);
        if (!obj.ok()) return obj;
        auto key = child(1);
        if (!key.ok()) return key;
        return GetItem(*obj, *key);
      }
      case Expr::Kind::kSlice: {
        absl::StatusOr<Value> parts[4];
        for (size_t i = 0; i < 4; ++i) {
          parts[i] = child(i);
          if (!parts[i].ok()) return parts[i];
        }
        return GetSlice(*parts[0], *parts[1], *parts[2], *parts[3]);
      }
      case Expr::Kind::kCall:
        return EvalCall(e, f);
      case Expr::Kind::kFilter:
        return EvalFilter(e, f, nullptr);
      case Expr::Kind::kTest: {
        auto subject = child(0);
        if (!subject.ok()) return subject;
        auto args = Args(e, 1, f);
        if (!args.ok()) return args.status();
        auto r = ApplyTest(e.name, *subject, *args);
        if (!r.ok()) return r.status();
        return Value::Bool(*r);
      }
      case Expr::Kind::kUnary: {
        auto v = child(0);
        if (!v.ok()) return v;
        if (e.name == "not") return Value::Bool(!v->Truthy());
        if (v->is_undefined()) return UndefinedError(*v);
        if (!v->is_number())
          return TypeError(
              StrCat("bad operand type for unary ", e.name, ": '", v->TypeName(), "'"));
        if (e.name == "+") return v->is_integral() ? Value::Int(v->AsInt()) : *v;
        if (!v->is_integral()) return Value::Float(-v->AsFloat());
        if (v->AsInt() == INT64_MIN) return Overflow();
        return Value::Int(-v->AsInt());
      }
      case Expr::Kind::kBinary: {
        auto l = child(0);
        if (!l.ok()) return l;
        auto r = child(1);
        if (!r.ok()) return r;
        return Arith(e.name, *l, *r);
      }
      case Expr::Kind::kCompare: {
        auto left = child(0);
        if (!left.ok()) return left;
        for (size_t i = 0; i < e.ops.size(); ++i) {
          auto right = child(i + 1);
          if (!right.ok()) return right;
          auto r = Compare(e.ops[i], *left, *right);
          if (!r.ok()) return r.status();
          if (!*r) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        auto l = child(0);
        if (!l.ok()) return l;
        if (l->Truthy() == (e.kind == Expr::Kind::kOr)) return l;
        return child(1);
      }
      case Expr::Kind::kCondExpr: {
        auto c = child(1);
        if (!c.ok()) return c;
        if (c->Truthy()) return child(0);
        if (e.children[2] == nullptr)
          return Value::Undefined(
              "the inline if-expression evaluated to false and no else "
              "section was defined");
        return child(2);
      }
    }
    return Value();
  }

  absl::StatusOr<Value> EvalCall(const Expr& e, const FramePtr& f) {
    const Expr& callee = *e.children[0];
    auto args = Args(e, 1, f);
    if (!args.ok()) return args.status();
    if (callee.kind == Expr::Kind::kGetAttr) {
      auto obj = Eval(*callee.children[0], f);
      if (!obj.ok()) return obj;
      if (obj->is_undefined()) return UndefinedError(*obj);
      const Value* member = nullptr;
      if (obj->is_dict()) member = obj->dict().Find(callee.name);
      if (obj->kind() == Value::Kind::kNamespace) member = obj->ns().attrs.Find(callee.name);
      if (member != nullptr && member->kind() == Value::Kind::kCallable) {
        const Value fn = *member;  // keeps the callable alive during the call
        return fn.callable().fn(*args);
      }
      return CallMethod(*obj, callee.name, *args);
    }
    auto fn = Eval(callee, f);
    if (!fn.ok()) return fn;
    if (fn->is_undefined()) return UndefinedError(*fn);
    if (fn->kind() != Value::Kind::kCallable)
      return TypeError(StrCat("'", fn->TypeName(), "' object is not callable"));
    const Value keep = *fn;
    return keep.callable().fn(*args);
  }

  const Template& t_;
  std::vector<FramePtr> macro_frames_;
  size_t err_pos_ = std::string::npos;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<std::string> Render(const Template& tmpl, const Dict& context) {
  return Evaluator(tmpl).Run(context);
}

}  // namespace engram::jinja
