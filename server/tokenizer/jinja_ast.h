// Syntax tree of the chat-template engine: what jinja_parser.cc builds and jinja_eval.cc runs.
// One node type per layer (expressions, statements), tagged by kind, mirroring jinja2/nodes.py
// closely enough that each Jinja2 construct has an obvious counterpart here.
#ifndef ENGRAM_SERVER_TOKENIZER_JINJA_AST_H_
#define ENGRAM_SERVER_TOKENIZER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/tokenizer/jinja_value.h"

namespace engram::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kConst,     // value
    kName,      // name
    kList,      // children: items
    kTuple,     // children: items
    kDict,      // children: key0, value0, key1, value1, ...
    kGetAttr,   // children[0].name
    kGetItem,   // children[0][children[1]]
    kSlice,     // children[0][c1:c2:c3]; absent parts are null
    kCall,      // children[0](children[1..], kwargs)
    kFilter,    // children[0] | name(children[1..], kwargs); children[0] null in a filter block
    kTest,      // children[0] is name(children[1..], kwargs)
    kUnary,     // name ("-", "+", "not") children[0]
    kBinary,    // children[0] name children[1]: + - * / // % ** ~
    kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
    kAnd,       // children[0] and children[1]
    kOr,        // children[0] or children[1]
    kCondExpr,  // children[0] if children[1] else children[2] (null: undefined)
  };
  Kind kind = Kind::kConst;
  size_t pos = 0;  // offset in the normalized source
  Value value;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: ==, !=, <, <=, >, >=, in, not in
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches (if / elif ...), else_body
    kFor,          // for targets in expr [if cond]: body, else_body
    kSet,          // set targets = expr | set targets[0].attr = expr
    kSetBlock,     // {% set targets[0] [| filter] %}body{% endset %}; filter: expr or null
    kMacro,        // macro name(params): body
    kWith,         // with params: body (a new scope; also {% generation %})
    kFilterBlock,  // {% filter expr %}body{% endfilter %}
    kBreak,
    kContinue,
  };
  Kind kind = Kind::kText;
  size_t pos = 0;
  std::string text;
  std::string name;  // macro name
  std::string attr;  // kSet on a namespace attribute
  ExprPtr expr;      // output / set value / for iterable / filter of a block
  ExprPtr cond;      // for ... if cond
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::vector<std::string> targets;
  bool unpack = false;                                  // targets came as a tuple (a, b)
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters / with assignments
};

struct Template {
  std::string source;  // normalized (newlines), for error positions
  Body body;
};

}  // namespace engram::jinja

#endif  // ENGRAM_SERVER_TOKENIZER_JINJA_AST_H_
