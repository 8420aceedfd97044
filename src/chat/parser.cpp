// Recursive-descent parser for the Jinja subset, with jinja2's operator
// precedence (lowest first): `x if c else y`, or, and, not, comparisons and
// `in`, + -, ~, * / // %, **, unary - +, then postfix (.attr, [index], call)
// with filters and tests binding to the unary operand.
//
// Nesting (of blocks, parentheses, brackets, unary operators, conditional
// expressions) is bounded by kMaxNesting so that a hostile template cannot
// overflow the stack here or later in the interpreter, which recurses along
// the same tree.
#include <initializer_list>

#include "chat/ast.h"
#include "chat/lexer.h"

namespace slm::chat {

namespace {

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

  // ---- statements ----

  // Parses until a {% NAME %} tag with NAME in `ends` (left unread, after its
  // '{%'; *end receives NAME) or the end of the template when ends is empty.
  Body parse_body(std::initializer_list<std::string_view> ends, std::string* end) {
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

  StmtPtr parse_statement() {
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
  void parse_targets(Stmt* s) {
    const bool paren = accept_op("(");
    do {
      if (paren && is_op(")")) break;
      s->targets.push_back(expect_name());
    } while (accept_op(","));
    if (paren) expect_op(")");
  }

  void parse_params(Stmt* s) {
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
  ExprPtr parse_filter_chain(ExprPtr subject) {
    ChainDepth chain(this);
    do {
      chain.link();
      subject = parse_filter(std::move(subject));
    } while (accept_op("|"));
    return subject;
  }

  // ---- expressions ----

  // A comma-separated list becomes a tuple, as in {{ a, b }} and {% set x = 1, 2 %}.
  ExprPtr parse_tuple() {
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

  ExprPtr parse_expression(bool with_condexpr) {
    NestGuard guard(this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
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

  ExprPtr binary(ExprKind kind, std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = make(kind, line);
    e->name = std::move(op);
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    ChainDepth chain(this);
    while (is_name("or")) {
      chain.link();
      const int line = take().line;
      left = binary(ExprKind::kOr, "or", std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    ChainDepth chain(this);
    while (is_name("and")) {
      chain.link();
      const int line = take().line;
      left = binary(ExprKind::kAnd, "and", std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (!is_name("not")) return parse_compare();
    NestGuard guard(this);
    auto e = make(ExprKind::kNot, take().line);
    e->args.push_back(parse_not());
    return e;
  }

  ExprPtr parse_compare() {
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

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    ChainDepth chain(this);
    while (is_op("+") || is_op("-")) {
      chain.link();
      const Token op = take();
      left = binary(ExprKind::kBinary, op.value, std::move(left), parse_concat(), op.line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto cat = make(ExprKind::kConcat, line);
    cat->args.push_back(std::move(first));
    while (accept_op("~")) cat->args.push_back(parse_math2());
    return cat;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    ChainDepth chain(this);
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      chain.link();
      const Token op = take();
      left = binary(ExprKind::kBinary, op.value, std::move(left), parse_pow(), op.line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    ChainDepth chain(this);
    while (is_op("**")) {
      chain.link();
      const Token op = take();
      left = binary(ExprKind::kBinary, op.value, std::move(left), parse_unary(true), op.line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
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

  ExprPtr parse_primary() {
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

  ExprPtr parse_postfix(ExprPtr node) {
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

  ExprPtr parse_subscript(ExprPtr node, int line) {
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
  ExprPtr parse_call(ExprPtr callee, ExprKind kind, std::string name) {
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

  ExprPtr parse_filter(ExprPtr subject) {
    const int line = cur().line;
    std::string name = expect_name();
    if (is_op("(")) return parse_call(std::move(subject), ExprKind::kFilter, std::move(name));
    auto e = make(ExprKind::kFilter, line);
    e->name = std::move(name);
    e->args.push_back(std::move(subject));
    return e;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
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

  ExprPtr parse_test(ExprPtr subject) {
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

  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<detail::Program> parse_template(std::string_view source) {
  auto program = std::make_unique<detail::Program>();
  program->body = Parser(tokenize(source)).parse_all();
  return program;
}

}  // namespace slm::chat
