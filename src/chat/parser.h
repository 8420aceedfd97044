// Internal to the template parser (parser.cpp, parser_expr.cpp): the Parser
// class, its token cursor and error helpers, and the nesting guards that
// bound recursion (kMaxNesting) so that a hostile template cannot overflow
// the stack here or later in the interpreter, which recurses along the same
// tree. Not part of the chat module's API: parse_template() in ast.h is.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/ast.h"
#include "chat/lexer.h"

namespace slm::chat::detail {

constexpr int kMaxNesting = 200;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    if (cur().type != TokenType::kEof) fail("unexpected '" + cur().value + "' tag");
    return body;
  }

 private:
  struct NestGuard {
    explicit NestGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxNesting) p_->fail("template nests deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    ~NestGuard() { --p_->depth_; }
    NestGuard(const NestGuard&) = delete;
    NestGuard& operator=(const NestGuard&) = delete;
    Parser* p_;
  };

  // A left-deep chain (a + b + c, x|f|g, a.b.c) nests one level per link.
  struct ChainDepth {
    explicit ChainDepth(Parser* p) : p_(p) {}
    ~ChainDepth() { p_->depth_ -= added_; }
    ChainDepth(const ChainDepth&) = delete;
    ChainDepth& operator=(const ChainDepth&) = delete;
    void link() {
      ++added_;
      if (++p_->depth_ > kMaxNesting) p_->fail("template nests deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    Parser* p_;
    int added_ = 0;
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw TemplateError("line " + std::to_string(cur().line) + ": " + what);
  }

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(std::size_t k = 1) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  Token take() {
    Token t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op) const { return cur().type == TokenType::kOp && cur().value == op; }
  bool is_name(std::string_view name) const { return cur().type == TokenType::kName && cur().value == name; }
  bool accept_op(std::string_view op) {
    if (!is_op(op)) return false;
    take();
    return true;
  }
  bool accept_name(std::string_view name) {
    if (!is_name(name)) return false;
    take();
    return true;
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case TokenType::kText: return "text";
      case TokenType::kVarBegin: return "'{{'";
      case TokenType::kVarEnd: return "'}}'";
      case TokenType::kBlockBegin: return "'{%'";
      case TokenType::kBlockEnd: return "'%}'";
      case TokenType::kEof: return "end of template";
      case TokenType::kString: return "string literal";
      case TokenType::kInt:
      case TokenType::kFloat: return "number";
      default: return "'" + t.value + "'";
    }
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) fail("expected '" + std::string(op) + "', got " + describe(cur()));
  }
  std::string expect_name() {
    if (cur().type != TokenType::kName) fail("expected a name, got " + describe(cur()));
    return take().value;
  }
  void expect_block_end() {
    if (cur().type != TokenType::kBlockEnd) fail("expected '%}', got " + describe(cur()));
    take();
  }

  ExprPtr make(ExprKind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements (parser.cpp) ----
  Body parse_body(std::initializer_list<std::string_view> ends, std::string* end);
  StmtPtr parse_statement();
  void parse_targets(Stmt* s);
  void parse_params(Stmt* s);
  ExprPtr parse_filter_chain(ExprPtr subject);

  // ---- expressions (parser_expr.cpp) ----
  ExprPtr parse_tuple();
  ExprPtr parse_expression(bool with_condexpr);
  ExprPtr parse_condexpr();
  ExprPtr binary(ExprKind kind, std::string op, ExprPtr left, ExprPtr right, int line);
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr node);
  ExprPtr parse_subscript(ExprPtr node, int line);
  ExprPtr parse_call(ExprPtr callee, ExprKind kind, std::string name);
  ExprPtr parse_filter(ExprPtr subject);
  ExprPtr parse_filter_expr(ExprPtr node);
  ExprPtr parse_test(ExprPtr subject);

  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace slm::chat::detail
