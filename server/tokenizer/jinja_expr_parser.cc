// Jinja2 expressions → syntax tree; see jinja_expr_parser.h. Function names follow
// jinja2/parser.py (parse_or, parse_compare, ...) so the precedence can be checked against it.
#include "server/tokenizer/jinja_expr_parser.h"

#include "server/tokenizer/jinja_builtins.h"

namespace engram::jinja {

std::string ExprParser::Describe(const Token& t) {
  switch (t.type) {
    case T::kText:
      return "template text";
    case T::kVarBegin:
      return "'{{'";
    case T::kVarEnd:
      return "'}}'";
    case T::kBlockBegin:
      return "'{%'";
    case T::kBlockEnd:
      return "'%}'";
    case T::kName:
      return StrCat("'", t.text, "'");
    case T::kString:
      return "a string";
    case T::kInt:
    case T::kFloat:
      return "a number";
    case T::kOp:
      return StrCat("'", t.text, "'");
    case T::kEof:
      return "end of template";
  }
  return "?";
}

absl::Status ExprParser::Expect(T type, std::string_view op, std::string_view what) {
  const Token& t = Cur();
  if (t.type != type || (!op.empty() && t.text != op))
    return Error(t.pos, StrCat("expected ", what, ", got ", Describe(t)));
  Next();
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExprParser::Name() {
  if (Cur().type != T::kName)
    return Error(Cur().pos, StrCat("expected a name, got ", Describe(Cur())));
  return Next().text;
}

// Parses template content until a `{% name %}` with name in `ends` (consumed: `*end` gets
// the name, the tag's remaining tokens are left) or the end of the template (ends empty).

ExprPtr ExprParser::Node(Expr::Kind kind, size_t pos) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->pos = pos;
  return e;
}

bool ExprParser::TupleEnd(const std::set<std::string>& extra) const {
  const Token& t = Cur();
  return t.type == T::kVarEnd || t.type == T::kBlockEnd || t.IsOp(")") ||
         (t.type == T::kName && extra.count(t.text));
}

// parse_tuple: an expression, or a tuple when commas follow.

absl::StatusOr<ExprPtr> ExprParser::ParseTuple(bool with_condexpr,
                                               const std::set<std::string>& extra,
                                               bool explicit_parens) {
  const size_t pos = Cur().pos;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) {
      if (absl::Status st = ExpectOp(","); !st.ok()) return st;
    }
    if (TupleEnd(extra)) break;
    auto e = ParseExpression(with_condexpr);
    if (!e.ok()) return e.status();
    items.push_back(*std::move(e));
    if (!Cur().IsOp(",")) break;
    is_tuple = true;
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens)
      return Error(Cur().pos, StrCat("expected an expression, got ", Describe(Cur())));
  }
  auto t = Node(Expr::Kind::kTuple, pos);
  t->children = std::move(items);
  return t;
}

absl::StatusOr<ExprPtr> ExprParser::ParseExpression(bool with_condexpr) {
  auto expr = ParseOr();
  if (!expr.ok() || !with_condexpr) return expr;
  while (Cur().IsName("if")) {
    const size_t pos = Next().pos;
    auto cond = ParseOr();
    if (!cond.ok()) return cond.status();
    ExprPtr otherwise;
    if (Cur().IsName("else")) {
      Next();
      auto e = ParseExpression(true);
      if (!e.ok()) return e.status();
      otherwise = *std::move(e);
    }
    auto n = Node(Expr::Kind::kCondExpr, pos);
    n->children.push_back(*std::move(expr));
    n->children.push_back(*std::move(cond));
    n->children.push_back(std::move(otherwise));
    expr = std::move(n);
  }
  return expr;
}

absl::StatusOr<ExprPtr> ExprParser::Binary(Expr::Kind kind, std::string op, ExprPtr l, ExprPtr r,
                                           size_t pos) {
  auto n = Node(kind, pos);
  n->name = std::move(op);
  n->children.push_back(std::move(l));
  n->children.push_back(std::move(r));
  return n;
}

template <typename Sub>
absl::StatusOr<ExprPtr> ExprParser::LeftAssoc(Sub sub, Expr::Kind kind,
                                              std::initializer_list<std::string_view> ops,
                                              bool names) {
  auto left = (this->*sub)();
  if (!left.ok()) return left;
  while (true) {
    const Token& t = Cur();
    std::string op;
    for (std::string_view o : ops)
      if (names ? t.IsName(o) : t.IsOp(o)) op = std::string(o);
    if (op.empty()) return left;
    const size_t pos = Next().pos;
    auto right = (this->*sub)();
    if (!right.ok()) return right;
    left = Binary(kind, op, *std::move(left), *std::move(right), pos);
  }
}

absl::StatusOr<ExprPtr> ExprParser::ParseNot() {
  if (Cur().IsName("not")) {
    const size_t pos = Next().pos;
    auto operand = ParseNot();
    if (!operand.ok()) return operand;
    auto n = Node(Expr::Kind::kUnary, pos);
    n->name = "not";
    n->children.push_back(*std::move(operand));
    return n;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> ExprParser::ParseCompare() {
  const size_t pos = Cur().pos;
  auto first = ParseMath1();
  if (!first.ok()) return first;
  ExprPtr n;
  while (true) {
    const Token& t = Cur();
    std::string op;
    if (t.type == T::kOp && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" ||
                             t.text == ">" || t.text == ">=")) {
      op = t.text;
      Next();
    } else if (t.IsName("in")) {
      op = "in";
      Next();
    } else if (t.IsName("not") && Peek().IsName("in")) {
      op = "not in";
      Next();
      Next();
    } else {
      break;
    }
    if (!n) {
      n = Node(Expr::Kind::kCompare, pos);
      n->children.push_back(*std::move(first));
    }
    auto rhs = ParseMath1();
    if (!rhs.ok()) return rhs;
    n->ops.push_back(op);
    n->children.push_back(*std::move(rhs));
  }
  if (n) return n;
  return first;
}

absl::StatusOr<ExprPtr> ExprParser::ParseUnary(bool with_filter) {
  absl::StatusOr<ExprPtr> node;
  if (Cur().IsOp("-") || Cur().IsOp("+")) {
    const Token& t = Next();
    auto operand = ParseUnary(false);
    if (!operand.ok()) return operand;
    auto n = Node(Expr::Kind::kUnary, t.pos);
    n->name = t.text;
    n->children.push_back(*std::move(operand));
    node = std::move(n);
  } else {
    node = ParsePrimary();
  }
  if (!node.ok()) return node;
  node = ParsePostfix(*std::move(node));
  if (!node.ok() || !with_filter) return node;
  return ParseFilterExpr(*std::move(node));
}

absl::StatusOr<ExprPtr> ExprParser::ParsePrimary() {
  const Token& t = Cur();
  if (t.type == T::kName) {
    Next();
    if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
      auto n = Node(Expr::Kind::kConst, t.pos);
      n->value = Value::Bool(t.text[0] == 't' || t.text[0] == 'T');
      return n;
    }
    if (t.text == "none" || t.text == "None") {
      auto n = Node(Expr::Kind::kConst, t.pos);
      n->value = Value::None();
      return n;
    }
    auto n = Node(Expr::Kind::kName, t.pos);
    n->name = t.text;
    return n;
  }
  if (t.type == T::kString) {
    auto n = Node(Expr::Kind::kConst, t.pos);
    std::string s;
    while (Cur().type == T::kString) s += Next().text;  // 'a' 'b' == 'ab'
    n->value = Value::String(std::move(s));
    return n;
  }
  if (t.type == T::kInt || t.type == T::kFloat) {
    Next();
    auto n = Node(Expr::Kind::kConst, t.pos);
    n->value = t.type == T::kInt ? Value::Int(t.ival) : Value::Float(t.fval);
    return n;
  }
  if (t.IsOp("(")) {
    Next();
    auto e = ParseTuple(true, {}, /*explicit_parens=*/true);
    if (!e.ok()) return e;
    if (absl::Status st = ExpectOp(")"); !st.ok()) return st;
    return e;
  }
  if (t.IsOp("[") || t.IsOp("{")) {
    const bool dict = t.IsOp("{");
    const std::string close = dict ? "}" : "]";
    auto n = Node(dict ? Expr::Kind::kDict : Expr::Kind::kList, Next().pos);
    while (!Cur().IsOp(close)) {
      if (!n->children.empty()) {
        if (absl::Status st = ExpectOp(","); !st.ok()) return st;
        if (Cur().IsOp(close)) break;
      }
      auto item = ParseExpression(true);
      if (!item.ok()) return item;
      n->children.push_back(*std::move(item));
      if (dict) {
        if (absl::Status st = ExpectOp(":"); !st.ok()) return st;
        auto value = ParseExpression(true);
        if (!value.ok()) return value;
        n->children.push_back(*std::move(value));
      }
    }
    Next();
    return n;
  }
  return Error(t.pos, StrCat("unexpected ", Describe(t)));
}

absl::StatusOr<ExprPtr> ExprParser::ParsePostfix(ExprPtr node) {
  while (true) {
    const Token& t = Cur();
    if (t.IsOp(".")) {
      Next();
      const Token& attr = Next();
      if (attr.type == T::kName) {
        auto n = Node(Expr::Kind::kGetAttr, attr.pos);
        n->name = attr.text;
        n->children.push_back(std::move(node));
        node = std::move(n);
      } else if (attr.type == T::kInt) {
        auto n = Node(Expr::Kind::kGetItem, attr.pos);
        n->children.push_back(std::move(node));
        auto idx = Node(Expr::Kind::kConst, attr.pos);
        idx->value = Value::Int(attr.ival);
        n->children.push_back(std::move(idx));
        node = std::move(n);
      } else {
        return Error(attr.pos, "expected an attribute name after '.'");
      }
    } else if (t.IsOp("[")) {
      auto sub = ParseSubscript(std::move(node));
      if (!sub.ok()) return sub;
      node = *std::move(sub);
    } else if (t.IsOp("(")) {
      auto call = ParseCall(std::move(node));
      if (!call.ok()) return call;
      node = *std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> ExprParser::ParseSubscript(ExprPtr obj) {
  const size_t pos = Next().pos;  // [
  std::vector<ExprPtr> parts;
  bool slice = false;
  auto part = [&]() -> absl::Status {
    if (Cur().IsOp(":") || Cur().IsOp("]")) {
      parts.push_back(nullptr);
      return absl::OkStatus();
    }
    auto e = ParseExpression(true);
    if (!e.ok()) return e.status();
    parts.push_back(*std::move(e));
    return absl::OkStatus();
  };
  if (absl::Status st = part(); !st.ok()) return st;
  for (int k = 0; k < 2 && Cur().IsOp(":"); ++k) {
    Next();
    slice = true;
    if (absl::Status st = part(); !st.ok()) return st;
  }
  if (Cur().IsOp(",")) return Unsupported(Cur().pos, "unsupported tuple subscript a[x, y]");
  if (absl::Status st = ExpectOp("]"); !st.ok()) return st;
  auto n = Node(slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem, pos);
  n->children.push_back(std::move(obj));
  if (!slice && !parts[0]) return Error(pos, "expected an index in '[]'");
  while (slice && parts.size() < 3) parts.push_back(nullptr);
  for (auto& p : parts) n->children.push_back(std::move(p));
  return n;
}

// Call arguments after '(' into n->children (positional) and n->kwargs.

absl::Status ExprParser::ParseArgs(Expr* n) {
  if (absl::Status st = ExpectOp("("); !st.ok()) return st;
  bool first = true;
  while (!Cur().IsOp(")")) {
    if (!first) {
      if (absl::Status st = ExpectOp(","); !st.ok()) return st;
      if (Cur().IsOp(")")) break;
    }
    first = false;
    if (Cur().IsOp("*") || Cur().IsOp("**"))
      return Unsupported(Cur().pos, "unsupported *args / **kwargs in a call");
    if (Cur().type == T::kName && Peek().IsOp("=")) {
      const std::string key = Next().text;
      Next();
      auto v = ParseExpression(true);
      if (!v.ok()) return v.status();
      n->kwargs.emplace_back(key, *std::move(v));
      continue;
    }
    if (!n->kwargs.empty()) return Error(Cur().pos, "positional argument after keyword argument");
    auto v = ParseExpression(true);
    if (!v.ok()) return v.status();
    n->children.push_back(*std::move(v));
  }
  Next();
  return absl::OkStatus();
}

absl::StatusOr<ExprPtr> ExprParser::ParseCall(ExprPtr callee) {
  auto n = Node(Expr::Kind::kCall, Cur().pos);
  if (callee->kind == Expr::Kind::kGetAttr && !IsMethod(callee->name))
    return Unsupported(callee->pos, StrCat("unsupported method '.", callee->name, "()'"));
  if (callee->kind == Expr::Kind::kName) called_.emplace_back(callee->name, callee->pos);
  n->children.push_back(std::move(callee));
  if (absl::Status st = ParseArgs(n.get()); !st.ok()) return st;
  return n;
}

// Filters `| name(args)` and tests `is [not] name args`, then calls on the result.

absl::StatusOr<ExprPtr> ExprParser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (Cur().IsOp("|")) {
      auto f = ParseFilters(std::move(node));
      if (!f.ok()) return f;
      node = *std::move(f);
    } else if (Cur().IsName("is")) {
      auto t = ParseTest(std::move(node));
      if (!t.ok()) return t;
      node = *std::move(t);
    } else if (Cur().IsOp("(")) {
      auto c = ParseCall(std::move(node));
      if (!c.ok()) return c;
      node = *std::move(c);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> ExprParser::ParseFilters(ExprPtr subject, bool first_without_pipe) {
  bool first = true;
  while (Cur().IsOp("|") || (first && first_without_pipe)) {
    if (!(first && first_without_pipe)) Next();
    first = false;
    const size_t pos = Cur().pos;
    auto name = Name();
    if (!name.ok()) return name.status();
    while (Cur().IsOp(".")) {
      Next();
      auto more = Name();
      if (!more.ok()) return more.status();
      *name += "." + *more;
    }
    if (!IsFilter(*name)) return Unsupported(pos, StrCat("unsupported filter '", *name, "'"));
    auto n = Node(Expr::Kind::kFilter, pos);
    n->name = *name;
    n->children.push_back(std::move(subject));
    if (Cur().IsOp("(")) {
      if (absl::Status st = ParseArgs(n.get()); !st.ok()) return st;
    }
    subject = std::move(n);
  }
  return subject;
}

absl::StatusOr<ExprPtr> ExprParser::ParseTest(ExprPtr subject) {
  const size_t pos = Next().pos;  // is
  bool negated = false;
  if (Cur().IsName("not")) {
    Next();
    negated = true;
  }
  std::string name;
  if (Cur().type == T::kName) {
    name = Next().text;
  } else if (Cur().type == T::kOp && IsTest(Cur().text)) {  // `is ==` etc. are not names
    return Error(Cur().pos, "expected a test name after 'is'");
  } else {
    return Error(Cur().pos, "expected a test name after 'is'");
  }
  if (!IsTest(name)) return Unsupported(pos, StrCat("unsupported test 'is ", name, "'"));
  auto n = Node(Expr::Kind::kTest, pos);
  n->name = name;
  n->children.push_back(std::move(subject));
  const Token& t = Cur();
  if (t.IsOp("(")) {
    if (absl::Status st = ParseArgs(n.get()); !st.ok()) return st;
  } else if ((t.type == T::kName && !t.IsName("else") && !t.IsName("or") && !t.IsName("and") &&
              !t.IsName("is")) ||
             t.type == T::kString || t.type == T::kInt || t.type == T::kFloat || t.IsOp("[") ||
             t.IsOp("{")) {
    auto arg = ParsePrimary();
    if (!arg.ok()) return arg;
    auto post = ParsePostfix(*std::move(arg));
    if (!post.ok()) return post;
    n->children.push_back(*std::move(post));
  }
  if (!negated) return n;
  auto neg = Node(Expr::Kind::kUnary, pos);
  neg->name = "not";
  neg->children.push_back(std::move(n));
  return neg;
}

}  // namespace engram::jinja
