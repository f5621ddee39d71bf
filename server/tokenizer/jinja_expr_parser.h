// Expression parser of the chat-template engine (internal to jinja_parser.cc and
// jinja_expr_parser.cc): the token cursor both levels share, and Jinja2's expression grammar
// with its precedence, from conditional expressions down to literals (jinja2/parser.py:
// parse_tuple, parse_expression, parse_or ... parse_primary, postfix, filters and tests).
// It also records static facts the statement parser checks when the template is complete
// (names called as functions). Filters, tests and methods are checked as they are parsed.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_EXPR_PARSER_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_EXPR_PARSER_H_

#include <algorithm>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/tokenizer/jinja_ast.h"
#include "server/tokenizer/jinja_lexer.h"
#include "server/util/str_cat.h"

namespace engram::jinja {

class ExprParser {
 public:
  using T = Token::Type;

  ExprParser(std::string source, std::vector<Token> tokens)
      : src_(std::move(source)), toks_(std::move(tokens)) {}

  const Token& Cur() const { return toks_[i_]; }
  const Token& Peek(size_t k = 1) const { return toks_[std::min(i_ + k, toks_.size() - 1)]; }
  const Token& Next() { return toks_[i_ < toks_.size() - 1 ? i_++ : i_]; }
  absl::Status Error(size_t pos, std::string_view msg) const {
    return absl::InvalidArgumentError(StrCat(Where(src_, pos), ": ", msg));
  }
  absl::Status Unsupported(size_t pos, std::string_view msg) const {
    return absl::UnimplementedError(StrCat(Where(src_, pos), ": ", msg));
  }
  static std::string Describe(const Token& t);
  absl::Status Expect(T type, std::string_view op, std::string_view what);
  absl::Status ExpectOp(std::string_view op) { return Expect(T::kOp, op, StrCat("'", op, "'")); }
  absl::Status ExpectName(std::string_view name) {
    return Expect(T::kName, name, StrCat("'", name, "'"));
  }
  absl::StatusOr<std::string> Name();
  ExprPtr Node(Expr::Kind kind, size_t pos);
  bool TupleEnd(const std::set<std::string>& extra) const;
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, const std::set<std::string>& extra,
                                     bool explicit_parens = false);
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  absl::StatusOr<ExprPtr> Binary(Expr::Kind kind, std::string op, ExprPtr l, ExprPtr r, size_t pos);
  template <typename Sub>
  absl::StatusOr<ExprPtr> LeftAssoc(Sub sub, Expr::Kind kind,
                                    std::initializer_list<std::string_view> ops, bool names);
  absl::StatusOr<ExprPtr> ParseOr() {
    return LeftAssoc(&ExprParser::ParseAnd, Expr::Kind::kOr, {"or"}, true);
  }
  absl::StatusOr<ExprPtr> ParseAnd() {
    return LeftAssoc(&ExprParser::ParseNot, Expr::Kind::kAnd, {"and"}, true);
  }
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1() {
    return LeftAssoc(&ExprParser::ParseConcat, Expr::Kind::kBinary, {"+", "-"}, false);
  }
  absl::StatusOr<ExprPtr> ParseConcat() {
    return LeftAssoc(&ExprParser::ParseMath2, Expr::Kind::kBinary, {"~"}, false);
  }
  absl::StatusOr<ExprPtr> ParseMath2() {
    return LeftAssoc(&ExprParser::ParsePow, Expr::Kind::kBinary, {"*", "/", "//", "%"}, false);
  }
  absl::StatusOr<ExprPtr> ParsePow() {
    return LeftAssoc(&ExprParser::ParseUnaryFiltered, Expr::Kind::kBinary, {"**"}, false);
  }
  absl::StatusOr<ExprPtr> ParseUnaryFiltered() { return ParseUnary(true); }
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr obj);
  absl::Status ParseArgs(Expr* n);
  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilters(ExprPtr subject, bool first_without_pipe = false);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr subject);

 protected:
  std::string src_;
  std::vector<Token> toks_;
  size_t i_ = 0;
  std::vector<std::pair<std::string, size_t>> called_;  // plain names called as functions
};

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_EXPR_PARSER_H_
