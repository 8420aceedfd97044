// Recursive-descent parser for the Jinja subset, statements half: text,
// {{ }} output, the {% %} tags with their bodies, and parse_template(). The
// Parser class and the guards that bound nesting (of blocks, parentheses,
// brackets, unary operators, conditional expressions) are in parser.h;
// expressions, with jinja2's operator precedence, are in parser_expr.cpp.
#include <initializer_list>

#include "chat/parser.h"

namespace slm::chat {

namespace detail {

// Parses until a {% NAME %} tag with NAME in `ends` (left unread, after its
// '{%'; *end receives NAME) or the end of the template when ends is empty.
Body Parser::parse_body(std::initializer_list<std::string_view> ends, std::string* end) {
  NestGuard guard(this);
  Body body;
  while (true) {
    const Token& t = cur();
    if (t.type == TokenType::kEof) {
      if (ends.size() == 0) return body;
      fail("unexpected end of template: missing {% " + std::string(*(ends.end() - 1)) + " %}");
    }
    if (t.type == TokenType::kText) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kText;
      s->line = t.line;
      s->text = take().value;
      body.push_back(std::move(s));
    } else if (t.type == TokenType::kVarBegin) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kOutput;
      s->line = take().line;
      s->expr = parse_tuple();
      if (cur().type != TokenType::kVarEnd) fail("expected '}}', got " + describe(cur()));
      take();
      body.push_back(std::move(s));
    } else if (t.type == TokenType::kBlockBegin) {
      const Token& name = peek();
      if (name.type == TokenType::kName) {
        for (std::string_view e : ends) {
          if (name.value == e) {
            take();
            *end = name.value;
            return body;
          }
        }
      }
      take();
      body.push_back(parse_statement());
    } else {
      fail("unexpected " + describe(t));
    }
  }
}

StmtPtr Parser::parse_statement() {
  if (cur().type != TokenType::kName) fail("expected a tag name, got " + describe(cur()));
  auto s = std::make_unique<Stmt>();
  s->line = cur().line;
  const std::string tag = take().value;
  std::string end;
  if (tag == "if") {
    s->kind = StmtKind::kIf;
    ExprPtr cond = parse_tuple();
    expect_block_end();
    while (true) {
      Body branch = parse_body({"elif", "else", "endif"}, &end);
      s->branches.emplace_back(std::move(cond), std::move(branch));
      take();  // the end tag's name
      if (end != "elif") break;
      cond = parse_tuple();
      expect_block_end();
    }
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endif"}, &end);
      take();
    }
    expect_block_end();
  } else if (tag == "for") {
    s->kind = StmtKind::kFor;
    parse_targets(s.get());
    if (!accept_name("in")) fail("expected 'in' in for loop, got " + describe(cur()));
    s->expr = parse_expression(false);
    if (accept_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    ++loop_depth_;
    s->body = parse_body({"else", "endfor"}, &end);
    --loop_depth_;
    take();
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"}, &end);
      take();
    }
    expect_block_end();
  } else if (tag == "set") {
    parse_targets(s.get());
    if (s->targets.size() == 1 && accept_op(".")) {
      s->targets.push_back(expect_name());
      s->target_attr = true;
    }
    if (accept_op("=")) {
      s->kind = StmtKind::kSet;
      s->expr = parse_tuple();
      expect_block_end();
    } else {
      if (s->targets.size() != 1 || s->target_attr) fail("a {% set %} block assigns one plain name");
      s->kind = StmtKind::kSetBlock;
      s->expr = make(ExprKind::kBlockText, s->line);
      if (accept_op("|")) s->expr = parse_filter_chain(std::move(s->expr));
      expect_block_end();
      s->body = parse_body({"endset"}, &end);
      take();
      expect_block_end();
    }
  } else if (tag == "macro") {
    s->kind = StmtKind::kMacro;
    s->name = expect_name();
    parse_params(s.get());
    expect_block_end();
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot leave a macro
    s->body = parse_body({"endmacro"}, &end);
    loop_depth_ = saved_loops;
    take();
    if (cur().type == TokenType::kName) take();  // {% endmacro name %}
    expect_block_end();
  } else if (tag == "call") {
    s->kind = StmtKind::kCallBlock;
    if (is_op("(")) parse_params(s.get());
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::kCall) fail("{% call %} needs a macro call");
    expect_block_end();
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_body({"endcall"}, &end);
    loop_depth_ = saved_loops;
    take();
    expect_block_end();
  } else if (tag == "filter") {
    s->kind = StmtKind::kFilterBlock;
    s->expr = parse_filter_chain(make(ExprKind::kBlockText, s->line));
    expect_block_end();
    s->body = parse_body({"endfilter"}, &end);
    take();
    expect_block_end();
  } else if (tag == "with") {
    s->kind = StmtKind::kWith;
    while (cur().type == TokenType::kName) {
      std::string name = expect_name();
      expect_op("=");
      s->params.emplace_back(std::move(name), parse_expression(true));
      if (!accept_op(",")) break;
    }
    expect_block_end();
    s->body = parse_body({"endwith"}, &end);
    take();
    expect_block_end();
  } else if (tag == "generation") {
    // Hugging Face's AssistantTracker tag: it only marks assistant text.
    s->kind = StmtKind::kScope;
    expect_block_end();
    s->body = parse_body({"endgeneration"}, &end);
    take();
    expect_block_end();
  } else if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) fail("'" + tag + "' outside a for loop");
    s->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    expect_block_end();
  } else if (tag == "include" || tag == "import" || tag == "from" || tag == "extends" || tag == "block") {
    fail("{% " + tag + " %} is not available: templates render alone, with no access to other files");
  } else if (tag.rfind("end", 0) == 0 || tag == "elif" || tag == "else") {
    fail("unexpected {% " + tag + " %}: no open block takes it here");
  } else {
    fail("unknown tag '" + tag + "'");
  }
  return s;
}

// NAME or NAME, NAME, ... or (NAME, NAME)
void Parser::parse_targets(Stmt* s) {
  const bool paren = accept_op("(");
  do {
    if (paren && is_op(")")) break;
    s->targets.push_back(expect_name());
  } while (accept_op(","));
  if (paren) expect_op(")");
}

void Parser::parse_params(Stmt* s) {
  expect_op("(");
  while (!is_op(")")) {
    std::string name = expect_name();
    ExprPtr def;
    if (accept_op("=")) def = parse_expression(true);
    s->params.emplace_back(std::move(name), std::move(def));
    if (!accept_op(",")) break;
  }
  expect_op(")");
}

// NAME[(args)] | NAME[(args)] ... applied to subject (the leading '|' already read, or none).
ExprPtr Parser::parse_filter_chain(ExprPtr subject) {
  ChainDepth chain(this);
  do {
    chain.link();
    subject = parse_filter(std::move(subject));
  } while (accept_op("|"));
  return subject;
}

}  // namespace detail

std::unique_ptr<detail::Program> parse_template(std::string_view source) {
  auto program = std::make_unique<detail::Program>();
  program->body = detail::Parser(tokenize(source)).parse_all();
  return program;
}

}  // namespace slm::chat
