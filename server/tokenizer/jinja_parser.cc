// Statement level of the chat-template parser (see jinja_parser.h): template text, {{ }} and
// the {% %} statements, on top of the expression parser (jinja_expr_parser.h).
#include "server/tokenizer/jinja_parser.h"

#include <set>
#include <utility>

#include "absl/status/status.h"
#include "server/tokenizer/jinja_builtins.h"
#include "server/tokenizer/jinja_expr_parser.h"
#include "server/tokenizer/jinja_lexer.h"
#include "server/util/str_cat.h"

namespace engram::jinja {
namespace {

class Parser : public ExprParser {
 public:
  using ExprParser::ExprParser;

  absl::StatusOr<std::shared_ptr<const Template>> Run() {
    auto t = std::make_shared<Template>();
    std::string end;
    if (absl::Status st = Subparse({}, &t->body, &end); !st.ok()) return st;
    for (const auto& [name, pos] : called_)
      if (!IsGlobal(name) && !macros_.count(name) && !assigned_.count(name))
        return Unsupported(pos, StrCat("call of unknown function '", name,
                                       "()' (not a macro of the template nor a supported global: "
                                       "range, namespace, dict, raise_exception, strftime_now)"));
    t->source = std::move(src_);
    return std::shared_ptr<const Template>(std::move(t));
  }

 private:
  absl::Status Subparse(const std::set<std::string>& ends, Body* body, std::string* end) {
    while (true) {
      const Token& t = Cur();
      if (t.type == T::kEof) {
        if (ends.empty()) return absl::OkStatus();
        return Error(t.pos,
                     StrCat("unexpected end of template, expected '{% ", *ends.rbegin(), " %}'"));
      }
      if (t.type == T::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->pos = t.pos;
        s->text = Next().text;
        body->push_back(std::move(s));
        continue;
      }
      if (t.type == T::kVarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->pos = Next().pos;
        auto e = ParseTuple(true, {});
        if (!e.ok()) return e.status();
        s->expr = *std::move(e);
        if (absl::Status st = Expect(T::kVarEnd, "", "'}}'"); !st.ok()) return st;
        body->push_back(std::move(s));
        continue;
      }
      if (t.type != T::kBlockBegin) return Error(t.pos, StrCat("unexpected ", Describe(t)));
      Next();
      if (Cur().type != T::kName) return Error(Cur().pos, "expected a statement name after '{%'");
      if (ends.count(Cur().text)) {
        *end = Next().text;
        return absl::OkStatus();
      }
      auto s = ParseStatement();
      if (!s.ok()) return s.status();
      body->push_back(*std::move(s));
    }
  }

  absl::Status EndTag() { return Expect(T::kBlockEnd, "", "'%}'"); }

  absl::StatusOr<StmtPtr> ParseStatement() {
    const Token& t = Cur();
    const std::string name = t.text;
    auto s = std::make_unique<Stmt>();
    s->pos = t.pos;
    Next();
    absl::Status st;
    std::string end;
    if (name == "if") {
      s->kind = Stmt::Kind::kIf;
      while (true) {
        auto cond = ParseTuple(false, {});
        if (!cond.ok()) return cond.status();
        if (st = EndTag(); !st.ok()) return st;
        Body body;
        if (st = Subparse({"elif", "else", "endif"}, &body, &end); !st.ok()) return st;
        s->branches.emplace_back(*std::move(cond), std::move(body));
        if (end != "elif") break;
      }
      if (end == "else") {
        if (st = EndTag(); !st.ok()) return st;
        if (st = Subparse({"endif"}, &s->else_body, &end); !st.ok()) return st;
      }
    } else if (name == "for") {
      s->kind = Stmt::Kind::kFor;
      if (st = ParseTargets(s.get(), false); !st.ok()) return st;
      if (st = ExpectName("in"); !st.ok()) return st;
      auto iter = ParseTuple(false, {"recursive"});
      if (!iter.ok()) return iter.status();
      s->expr = *std::move(iter);
      if (Cur().IsName("if")) {
        Next();
        auto cond = ParseExpression(true);
        if (!cond.ok()) return cond.status();
        s->cond = *std::move(cond);
      }
      if (Cur().IsName("recursive")) return Unsupported(Cur().pos, "unsupported recursive loop");
      if (st = EndTag(); !st.ok()) return st;
      ++loop_depth_;
      st = Subparse({"endfor", "else"}, &s->body, &end);
      --loop_depth_;
      if (!st.ok()) return st;
      if (end == "else") {
        if (st = EndTag(); !st.ok()) return st;
        if (st = Subparse({"endfor"}, &s->else_body, &end); !st.ok()) return st;
      }
    } else if (name == "set") {
      if (st = ParseTargets(s.get(), true); !st.ok()) return st;
      if (Cur().IsOp("=")) {
        Next();
        s->kind = Stmt::Kind::kSet;
        auto value = ParseTuple(true, {});
        if (!value.ok()) return value.status();
        s->expr = *std::move(value);
        return FinishSimple(std::move(s));
      }
      if (!s->attr.empty() || s->unpack)
        return Error(s->pos, "a block {% set %} assigns a single name");
      s->kind = Stmt::Kind::kSetBlock;
      if (Cur().IsOp("|")) {
        auto f = ParseFilters(nullptr);
        if (!f.ok()) return f.status();
        s->expr = *std::move(f);
      }
      if (st = EndTag(); !st.ok()) return st;
      if (st = Subparse({"endset"}, &s->body, &end); !st.ok()) return st;
    } else if (name == "macro") {
      s->kind = Stmt::Kind::kMacro;
      auto macro_name = Name();
      if (!macro_name.ok()) return macro_name.status();
      s->name = *macro_name;
      macros_.insert(s->name);
      if (st = ExpectOp("("); !st.ok()) return st;
      while (!Cur().IsOp(")")) {
        if (!s->params.empty()) {
          if (st = ExpectOp(","); !st.ok()) return st;
          if (Cur().IsOp(")")) break;
        }
        auto param = Name();
        if (!param.ok()) return param.status();
        ExprPtr def;
        if (Cur().IsOp("=")) {
          Next();
          auto d = ParseExpression(true);
          if (!d.ok()) return d.status();
          def = *std::move(d);
        }
        assigned_.insert(*param);
        s->params.emplace_back(*param, std::move(def));
      }
      Next();
      if (st = EndTag(); !st.ok()) return st;
      const int saved = loop_depth_;
      loop_depth_ = 0;
      st = Subparse({"endmacro"}, &s->body, &end);
      loop_depth_ = saved;
      if (!st.ok()) return st;
    } else if (name == "with" || name == "generation") {
      // {% generation %} is HF's AssistantTracker extension: it renders its body unchanged.
      s->kind = Stmt::Kind::kWith;
      while (name == "with" && Cur().type != T::kBlockEnd) {
        if (!s->params.empty()) {
          if (st = ExpectOp(","); !st.ok()) return st;
        }
        auto var = Name();
        if (!var.ok()) return var.status();
        if (st = ExpectOp("="); !st.ok()) return st;
        auto value = ParseExpression(true);
        if (!value.ok()) return value.status();
        assigned_.insert(*var);
        s->params.emplace_back(*var, *std::move(value));
      }
      if (st = EndTag(); !st.ok()) return st;
      if (st = Subparse({"end" + name}, &s->body, &end); !st.ok()) return st;
    } else if (name == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      auto f = ParseFilters(nullptr, /*first_without_pipe=*/true);
      if (!f.ok()) return f.status();
      s->expr = *std::move(f);
      if (st = EndTag(); !st.ok()) return st;
      if (st = Subparse({"endfilter"}, &s->body, &end); !st.ok()) return st;
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Error(s->pos, StrCat("'", name, "' outside of a loop"));
      s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      return FinishSimple(std::move(s));
    } else if (name == "include" || name == "import" || name == "from" || name == "extends" ||
               name == "block" || name == "call" || name == "autoescape" || name == "trans" ||
               name == "do" || name == "pluralize" || name == "print") {
      return Unsupported(t.pos, StrCat("unsupported statement '{% ", name, " %}'"));
    } else {
      return Error(t.pos, StrCat("unknown or misplaced statement '{% ", name, " %}'"));
    }
    if (st = EndTag(); !st.ok()) return st;
    return s;
  }

  absl::StatusOr<StmtPtr> FinishSimple(StmtPtr s) {
    if (absl::Status st = EndTag(); !st.ok()) return st;
    return s;
  }

  // for/set targets: name | a, b | (a, b) | ns.attr (set only).
  absl::Status ParseTargets(Stmt* s, bool allow_attr) {
    const bool paren = Cur().IsOp("(");
    if (paren) Next();
    while (true) {
      auto n = Name();
      if (!n.ok()) return n.status();
      s->targets.push_back(*n);
      assigned_.insert(*n);
      if (allow_attr && s->targets.size() == 1 && !paren && Cur().IsOp(".")) {
        Next();
        auto attr = Name();
        if (!attr.ok()) return attr.status();
        s->attr = *attr;
        return absl::OkStatus();
      }
      if (!Cur().IsOp(",")) break;
      s->unpack = true;
      Next();
      if (paren && Cur().IsOp(")")) break;
    }
    if (paren) {
      s->unpack = true;
      return ExpectOp(")");
    }
    return absl::OkStatus();
  }

  int loop_depth_ = 0;
  std::set<std::string> macros_;
  std::set<std::string> assigned_;  // names set, looped over or bound: may hold a macro
};

}  // namespace

absl::StatusOr<std::shared_ptr<const Template>> ParseTemplate(std::string_view source) {
  std::string normalized = NormalizeSource(source);
  auto tokens = Lex(normalized);
  if (!tokens.ok()) return tokens.status();
  return Parser(std::move(normalized), *std::move(tokens)).Run();
}

}  // namespace engram::jinja
