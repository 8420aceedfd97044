// The expressions of the template parser (the Parser class is in parser.h;
// statements are in parser.cpp), with jinja2's operator precedence, lowest
// first: `x if c else y`, or, and, not, comparisons and `in`, + -, ~,
// * / // %, **, unary - +, then postfix (.attr, [index], call) with filters
// and tests binding to the unary operand. Every left-deep chain and every
// recursion goes through NestGuard / ChainDepth, which bound the nesting.
#include "chat/parser.h"

namespace slm::chat::detail {

// A comma-separated list becomes a tuple, as in {{ a, b }} and {% set x = 1, 2 %}.
ExprPtr Parser::parse_tuple() {
  const int line = cur().line;
  ExprPtr first = parse_expression(true);
  if (!is_op(",")) return first;
  auto tuple = make(ExprKind::kTuple, line);
  tuple->args.push_back(std::move(first));
  while (accept_op(",")) {
    if (cur().type == TokenType::kBlockEnd || cur().type == TokenType::kVarEnd || is_op(")")) break;
    tuple->args.push_back(parse_expression(true));
  }
  return tuple;
}

ExprPtr Parser::parse_expression(bool with_condexpr) {
  NestGuard guard(this);
  return with_condexpr ? parse_condexpr() : parse_or();
}

ExprPtr Parser::parse_condexpr() {
  NestGuard guard(this);
  ExprPtr expr = parse_or();
  ChainDepth chain(this);
  while (is_name("if")) {
    chain.link();
    auto cond = make(ExprKind::kCondition, take().line);
    cond->args.push_back(std::move(expr));
    cond->args.push_back(parse_or());
    cond->args.push_back(accept_name("else") ? parse_condexpr() : nullptr);
    expr = std::move(cond);
  }
  return expr;
}

ExprPtr Parser::binary(ExprKind kind, std::string op, ExprPtr left, ExprPtr right, int line) {
  auto e = make(kind, line);
  e->name = std::move(op);
  e->args.push_back(std::move(left));
  e->args.push_back(std::move(right));
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr left = parse_and();
  ChainDepth chain(this);
  while (is_name("or")) {
    chain.link();
    const int line = take().line;
    left = binary(ExprKind::kOr, "or", std::move(left), parse_and(), line);
  }
  return left;
}

ExprPtr Parser::parse_and() {
  ExprPtr left = parse_not();
  ChainDepth chain(this);
  while (is_name("and")) {
    chain.link();
    const int line = take().line;
    left = binary(ExprKind::kAnd, "and", std::move(left), parse_not(), line);
  }
  return left;
}

ExprPtr Parser::parse_not() {
  if (!is_name("not")) return parse_compare();
  NestGuard guard(this);
  auto e = make(ExprKind::kNot, take().line);
  e->args.push_back(parse_not());
  return e;
}

ExprPtr Parser::parse_compare() {
  const int line = cur().line;
  ExprPtr first = parse_math1();
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (cur().type == TokenType::kOp && (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
                                         cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
      op = take().value;
    } else if (is_name("in")) {
      take();
      op = "in";
    } else if (is_name("not") && peek().type == TokenType::kName && peek().value == "in") {
      take();
      take();
      op = "not in";
    } else {
      break;
    }
    if (!cmp) {
      cmp = make(ExprKind::kCompare, line);
      cmp->args.push_back(std::move(first));
    }
    cmp->ops.push_back(std::move(op));
    cmp->args.push_back(parse_math1());
  }
  return cmp ? std::move(cmp) : std::move(first);
}

ExprPtr Parser::parse_math1() {
  ExprPtr left = parse_concat();
  ChainDepth chain(this);
  while (is_op("+") || is_op("-")) {
    chain.link();
    const Token op = take();
    left = binary(ExprKind::kBinary, op.value, std::move(left), parse_concat(), op.line);
  }
  return left;
}

ExprPtr Parser::parse_concat() {
  const int line = cur().line;
  ExprPtr first = parse_math2();
  if (!is_op("~")) return first;
  auto cat = make(ExprKind::kConcat, line);
  cat->args.push_back(std::move(first));
  while (accept_op("~")) cat->args.push_back(parse_math2());
  return cat;
}

ExprPtr Parser::parse_math2() {
  ExprPtr left = parse_pow();
  ChainDepth chain(this);
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    chain.link();
    const Token op = take();
    left = binary(ExprKind::kBinary, op.value, std::move(left), parse_pow(), op.line);
  }
  return left;
}

ExprPtr Parser::parse_pow() {
  ExprPtr left = parse_unary(true);
  ChainDepth chain(this);
  while (is_op("**")) {
    chain.link();
    const Token op = take();
    left = binary(ExprKind::kBinary, op.value, std::move(left), parse_unary(true), op.line);
  }
  return left;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  ExprPtr node;
  if (is_op("-") || is_op("+")) {
    NestGuard guard(this);
    const Token op = take();
    node = make(op.value == "-" ? ExprKind::kNeg : ExprKind::kPos, op.line);
    node->args.push_back(parse_unary(false));
  } else {
    node = parse_primary();
  }
  node = parse_postfix(std::move(node));
  if (with_filter) node = parse_filter_expr(std::move(node));
  return node;
}

ExprPtr Parser::parse_primary() {
  const Token& t = cur();
  const int line = t.line;
  if (t.type == TokenType::kName) {
    const std::string name = take().value;
    auto e = make(ExprKind::kLiteral, line);
    if (name == "true" || name == "True") e->literal = Value::boolean(true);
    else if (name == "false" || name == "False") e->literal = Value::boolean(false);
    else if (name == "none" || name == "None") e->literal = Value::none();
    else {
      e->kind = ExprKind::kName;
      e->name = name;
    }
    return e;
  }
  if (t.type == TokenType::kString) {
    std::string s;
    while (cur().type == TokenType::kString) s += take().value;  // adjacent literals join
    auto e = make(ExprKind::kLiteral, line);
    e->literal = Value::string(std::move(s));
    return e;
  }
  if (t.type == TokenType::kInt || t.type == TokenType::kFloat) {
    auto e = make(ExprKind::kLiteral, line);
    e->literal = t.type == TokenType::kInt ? Value::integer(t.int_value) : Value::number(t.float_value);
    take();
    return e;
  }
  if (accept_op("(")) {
    if (accept_op(")")) return make(ExprKind::kTuple, line);
    ExprPtr first = parse_expression(true);
    if (accept_op(")")) return first;
    auto tuple = make(ExprKind::kTuple, line);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (is_op(")")) break;
      tuple->args.push_back(parse_expression(true));
    }
    expect_op(")");
    return tuple;
  }
  if (accept_op("[")) {
    auto list = make(ExprKind::kList, line);
    while (!is_op("]")) {
      list->args.push_back(parse_expression(true));
      if (!accept_op(",")) break;
    }
    expect_op("]");
    return list;
  }
  if (accept_op("{")) {
    auto dict = make(ExprKind::kDict, line);
    while (!is_op("}")) {
      dict->args.push_back(parse_expression(true));
      expect_op(":");
      dict->args.push_back(parse_expression(true));
      if (!accept_op(",")) break;
    }
    expect_op("}");
    return dict;
  }
  fail("unexpected " + describe(t) + " in expression");
}

ExprPtr Parser::parse_postfix(ExprPtr node) {
  ChainDepth chain(this);
  while (true) {
    chain.link();
    const int line = cur().line;
    if (accept_op(".")) {
      if (cur().type == TokenType::kInt) {
        auto e = make(ExprKind::kGetItem, line);
        auto index = make(ExprKind::kLiteral, line);
        index->literal = Value::integer(take().int_value);
        e->args.push_back(std::move(node));
        e->args.push_back(std::move(index));
        node = std::move(e);
      } else {
        auto e = make(ExprKind::kGetAttr, line);
        e->name = expect_name();
        e->args.push_back(std::move(node));
        node = std::move(e);
      }
    } else if (accept_op("[")) {
      node = parse_subscript(std::move(node), line);
    } else if (is_op("(")) {
      node = parse_call(std::move(node), ExprKind::kCall, "");
    } else {
      return node;
    }
  }
}

ExprPtr Parser::parse_subscript(ExprPtr node, int line) {
  ExprPtr parts[3];
  int n = 0;
  bool slice = false;
  while (true) {
    if (!is_op(":") && !is_op("]")) parts[n] = parse_expression(true);
    if (n < 2 && accept_op(":")) {
      slice = true;
      ++n;
      continue;
    }
    break;
  }
  expect_op("]");
  if (!slice) {
    if (!parts[0]) fail("empty subscript");
    auto e = make(ExprKind::kGetItem, line);
    e->args.push_back(std::move(node));
    e->args.push_back(std::move(parts[0]));
    return e;
  }
  auto e = make(ExprKind::kSlice, line);
  e->args.push_back(std::move(node));
  for (auto& p : parts) e->args.push_back(std::move(p));
  return e;
}

// callee(args...) for calls, filters and tests; the '(' is current.
ExprPtr Parser::parse_call(ExprPtr callee, ExprKind kind, std::string name) {
  auto e = make(kind, cur().line);
  e->name = std::move(name);
  e->args.push_back(std::move(callee));
  expect_op("(");
  while (!is_op(")")) {
    if (is_op("*") || is_op("**")) fail("*args and **kwargs are not supported");
    if (cur().type == TokenType::kName && peek().type == TokenType::kOp && peek().value == "=") {
      std::string key = take().value;
      take();
      e->kwargs.emplace_back(std::move(key), parse_expression(true));
    } else {
      if (!e->kwargs.empty()) fail("positional argument follows keyword argument");
      e->args.push_back(parse_expression(true));
    }
    if (!accept_op(",")) break;
  }
  expect_op(")");
  return e;
}

ExprPtr Parser::parse_filter(ExprPtr subject) {
  const int line = cur().line;
  std::string name = expect_name();
  if (is_op("(")) return parse_call(std::move(subject), ExprKind::kFilter, std::move(name));
  auto e = make(ExprKind::kFilter, line);
  e->name = std::move(name);
  e->args.push_back(std::move(subject));
  return e;
}

ExprPtr Parser::parse_filter_expr(ExprPtr node) {
  ChainDepth chain(this);
  while (true) {
    chain.link();
    if (accept_op("|")) {
      node = parse_filter(std::move(node));
    } else if (is_name("is")) {
      node = parse_test(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node), ExprKind::kCall, "");
    } else {
      return node;
    }
  }
}

ExprPtr Parser::parse_test(ExprPtr subject) {
  const int line = take().line;  // 'is'
  const bool negated = accept_name("not");
  std::string name = expect_name();
  ExprPtr e;
  if (is_op("(")) {
    e = parse_call(std::move(subject), ExprKind::kTest, std::move(name));
  } else {
    e = make(ExprKind::kTest, line);
    e->name = std::move(name);
    e->args.push_back(std::move(subject));
    // One bare argument, as in `x is divisibleby 3` or `x is sameas none`.
    const Token& t = cur();
    const bool starts_arg = t.type == TokenType::kName || t.type == TokenType::kString ||
                            t.type == TokenType::kInt || t.type == TokenType::kFloat || is_op("(") ||
                            is_op("[") || is_op("{");
    if (starts_arg && !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("a test cannot take another test as its argument");
      e->args.push_back(parse_postfix(parse_primary()));
    }
  }
  e->negated = negated;
  return e;
}

}  // namespace slm::chat::detail
