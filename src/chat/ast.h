// The parsed form of a template. A Program is immutable once built and is
// shared by every render of its Template.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace slm::chat {

enum class ExprKind {
  kLiteral,   // literal
  kName,      // name
  kList,      // args = items
  kTuple,     // args = items
  kDict,      // args = key, value, key, value, ...
  kGetAttr,   // args[0].name
  kGetItem,   // args[0][args[1]]
  kSlice,     // args[0][args[1]:args[2]:args[3]]; absent parts are null
  kCall,      // args[0](args[1..], kwargs)
  kFilter,    // args[0] | name(args[1..], kwargs)
  kTest,      // args[0] is [not] name(args[1..], kwargs); negated
  kNot,       // not args[0]
  kNeg,       // -args[0]
  kPos,       // +args[0]
  kBinary,    // args[0] name args[1], name in + - * / // % **
  kConcat,    // args[0] ~ args[1] ~ ...
  kAnd,       // args[0] and args[1]
  kOr,        // args[0] or args[1]
  kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ...
  kCondition, // args[0] if args[1] else args[2] (args[2] may be null)
  kBlockText, // the rendered body of a {% filter %} or {% set %} block
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  int line = 0;
  std::string name;
  Value literal;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
};

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // branches, else_body
  kFor,          // targets in expr [if cond]: body, else_body
  kSet,          // targets = expr, or target_attr: targets[0].targets[1] = expr
  kSetBlock,     // {% set targets[0] [| filters] %}body{% endset %}: expr is the filter chain over kBlockText
  kMacro,        // name(params): body
  kCallBlock,    // {% call(params) expr %}body{% endcall %}
  kFilterBlock,  // {% filter chain %}body{% endfilter %}: expr is the chain over kBlockText
  kWith,         // {% with params %}body{% endwith %}
  kScope,        // a block whose body renders as is ({% generation %})
  kBreak,
  kContinue,
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  StmtKind kind = StmtKind::kText;
  int line = 0;
  std::string text;
  std::string name;
  std::vector<std::string> targets;
  bool target_attr = false;
  ExprPtr expr;
  ExprPtr cond;
  std::vector<std::pair<ExprPtr, Body>> branches;
  // Macro and caller parameters (default may be null); With assignments.
  std::vector<std::pair<std::string, ExprPtr>> params;
  Body body;
  Body else_body;
};

namespace detail {
struct Program {
  Body body;
};
}  // namespace detail

// Throws TemplateError with the line on syntax errors and past the nesting limit.
std::unique_ptr<detail::Program> parse_template(std::string_view source);

}  // namespace slm::chat
