// The interpreter: walks a parsed Program over a render's values.
//
// Scopes follow jinja2: each for-loop iteration, macro call and {% with %}
// gets its own scope, `if` does not; a macro sees its arguments and then the
// template's top-level variables (looked up when it runs). The interpreter's
// recursion follows the template's nesting, bounded by the parser, times the
// macro call depth, bounded by RenderOptions; kMaxEvalDepth caps the product
// so the native stack stays small whatever the template.
#include <algorithm>
#include <new>

#include "chat/ast.h"
#include "chat/runtime.h"
#include "chat/template.h"

namespace slm::chat {

namespace {

constexpr int kMaxEvalDepth = 400;

enum class Flow { kNormal, kBreak, kContinue };

struct Scope {
  Scope* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* find(std::string_view name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent) {
      for (const auto& [n, v] : s->vars)
        if (n == name) return &v;
    }
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    for (auto& [n, old] : vars) {
      if (n == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

class Interpreter : public Runtime {
 public:
  Interpreter(const RenderOptions& opts, Scope* root) : Runtime(opts), root_(root) {}

  void run(const Body& body, std::string& out) {
    try {
      exec_body(body, *root_, out);
    } catch (const TemplateError& e) {
      if (e.raised_by_template()) throw;
      throw TemplateError("line " + std::to_string(line_) + ": " + e.what());
    } catch (const std::bad_alloc&) {
      throw TemplateError("line " + std::to_string(line_) + ": out of memory while rendering");
    } catch (const std::exception& e) {
      throw TemplateError("line " + std::to_string(line_) + ": " + e.what());
    }
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Interpreter* in) : in_(in) {
      if (++in_->depth_ > kMaxEvalDepth) throw TemplateError("template recursion is too deep");
    }
    ~DepthGuard() { --in_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    Interpreter* in_;
  };

  void emit(std::string& out, std::string_view s) {
    check_growth(out.size() + s.size(), s.size());
    out += s;
  }

  // ---- statements ----

  Flow exec_body(const Body& body, Scope& scope, std::string& out) {
    for (const StmtPtr& s : body) {
      const Flow f = exec(*s, scope, out);
      if (f != Flow::kNormal) return f;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s, Scope& scope, std::string& out) {
    DepthGuard guard(this);
    charge(1);
    line_ = s.line;
    switch (s.kind) {
      case StmtKind::kText: emit(out, s.text); break;
      case StmtKind::kOutput: {
        const Value v = eval(*s.expr, scope);
        if (v.is_string()) emit(out, v.str());
        else emit(out, v.to_string());
        break;
      }
      case StmtKind::kIf:
        for (const auto& [cond, body] : s.branches) {
          if (eval(*cond, scope).truthy()) return exec_body(body, scope, out);
        }
        return exec_body(s.else_body, scope, out);
      case StmtKind::kFor: exec_for(s, scope, out); break;
      case StmtKind::kSet: exec_set(s, scope); break;
      case StmtKind::kSetBlock: scope.set(s.targets[0], render_block(s, scope)); break;
      case StmtKind::kMacro: scope.set(s.name, make_macro(s)); break;
      case StmtKind::kCallBlock: emit(out, exec_call_block(s, scope).to_string()); break;
      case StmtKind::kFilterBlock: emit(out, render_block(s, scope).to_string()); break;
      case StmtKind::kWith: {
        Scope inner{&scope, {}};
        for (const auto& [name, expr] : s.params) inner.set(name, eval(*expr, scope));
        return exec_body(s.body, inner, out);
      }
      case StmtKind::kScope: return exec_body(s.body, scope, out);
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void bind_targets(const Stmt& s, Scope& scope, const Value& v) {
    if (s.targets.size() == 1) {
      scope.set(s.targets[0], v);
      return;
    }
    if (!v.is_list()) throw TemplateError("cannot unpack a non-sequence " + v.type_name());
    const auto& items = v.items();
    if (items.size() != s.targets.size()) {
      throw TemplateError(items.size() > s.targets.size()
                              ? "too many values to unpack (expected " + std::to_string(s.targets.size()) + ")"
                              : "not enough values to unpack (expected " + std::to_string(s.targets.size()) +
                                    ", got " + std::to_string(items.size()) + ")");
    }
    for (std::size_t i = 0; i < items.size(); ++i) scope.set(s.targets[i], items[i]);
  }

  [[gnu::noinline]] void exec_for(const Stmt& s, Scope& scope, std::string& out) {
    std::vector<Value> items = iterate(*this, eval(*s.expr, scope));
    if (s.cond) {
      std::vector<Value> kept;
      for (Value& item : items) {
        Scope probe{&scope, {}};
        bind_targets(s, probe, item);
        if (eval(*s.cond, probe).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec_body(s.else_body, scope, out);
      return;
    }
    count_iterations(items.size());
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      Scope iteration{&scope, {}};
      const Value& item = items[static_cast<std::size_t>(i)];
      bind_targets(s, iteration, item);
      iteration.set("loop", loop_value(items, i));
      if (exec_body(s.body, iteration, out) == Flow::kBreak) break;
    }
  }

  // jinja2's `loop` (without cycle() and recursion, which chat templates do not use).
  static Value loop_value(const std::vector<Value>& items, int64_t i) {
    static const Value kKeys[] = {Value::string("index"),    Value::string("index0"), Value::string("revindex"),
                                  Value::string("revindex0"), Value::string("first"),  Value::string("last"),
                                  Value::string("length"),   Value::string("depth"),  Value::string("depth0"),
                                  Value::string("previtem"), Value::string("nextitem")};
    static const Value kNoPrevious = Value::undefined("there is no previous item");
    static const Value kNoNext = Value::undefined("there is no next item");
    const auto n = static_cast<int64_t>(items.size());
    const Value values[] = {Value::integer(i + 1),
                            Value::integer(i),
                            Value::integer(n - i),
                            Value::integer(n - i - 1),
                            Value::boolean(i == 0),
                            Value::boolean(i == n - 1),
                            Value::integer(n),
                            Value::integer(1),
                            Value::integer(0),
                            i > 0 ? items[static_cast<std::size_t>(i - 1)] : kNoPrevious,
                            i + 1 < n ? items[static_cast<std::size_t>(i + 1)] : kNoNext};
    std::vector<std::pair<Value, Value>> entries;
    entries.reserve(std::size(kKeys));
    for (std::size_t k = 0; k < std::size(kKeys); ++k) entries.emplace_back(kKeys[k], values[k]);
    return Value::dict(std::move(entries));
  }

  [[gnu::noinline]] void exec_set(const Stmt& s, Scope& scope) {
    Value v = eval(*s.expr, scope);
    if (!s.target_attr) {
      bind_targets(s, scope, v);
      return;
    }
    const Value* ns = scope.find(s.targets[0]);
    if (ns == nullptr || !ns->is_namespace())
      throw TemplateError("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    if (v.has_namespace()) throw TemplateError("a namespace cannot hold another namespace");
    ns->namespace_obj().set(Value::string(s.targets[1]), std::move(v));
  }

  // The body of a {% set %} or {% filter %} block, through its filter chain.
  [[gnu::noinline]] Value render_block(const Stmt& s, Scope& scope) {
    std::string text;
    exec_body(s.body, scope, text);
    const Value block = Value::string(std::move(text));
    const Value* saved = block_text_;
    block_text_ = &block;
    Value v = eval(*s.expr, scope);
    block_text_ = saved;
    return v;
  }

  Value make_macro(const Stmt& macro) {
    return Value::function(macro.name, [this, &macro](Runtime&, CallArgs& args) { return call_macro(macro, args); });
  }

  [[gnu::noinline]] Value call_macro(const Stmt& m, CallArgs& args) {
    if (call_depth_ >= options().max_call_depth)
      throw TemplateError("macro calls nested deeper than " + std::to_string(options().max_call_depth));
    if (args.positional.size() > m.params.size()) {
      throw TemplateError("macro '" + m.name + "' takes not more than " + std::to_string(m.params.size()) +
                          " argument(s)");
    }
    Scope scope{root_, {}};
    std::vector<bool> given(m.params.size(), false);
    for (std::size_t i = 0; i < args.positional.size(); ++i) {
      scope.set(m.params[i].first, args.positional[i]);
      given[i] = true;
    }
    for (auto& [name, value] : args.named) {
      std::size_t i = 0;
      while (i < m.params.size() && m.params[i].first != name) ++i;
      if (i == m.params.size()) {
        if (name != "caller") throw TemplateError("macro '" + m.name + "' takes no keyword argument '" + name + "'");
        scope.set(name, value);
        continue;
      }
      if (given[i]) throw TemplateError("macro '" + m.name + "' got multiple values for argument '" + name + "'");
      scope.set(name, value);
      given[i] = true;
    }
    for (std::size_t i = 0; i < m.params.size(); ++i) {
      if (given[i]) continue;
      const auto& [name, def] = m.params[i];
      scope.set(name, def ? eval(*def, scope) : Value::undefined("'" + name + "' is undefined"));
    }
    ++call_depth_;
    std::string out;
    try {
      exec_body(m.body, scope, out);
    } catch (...) {
      --call_depth_;
      throw;
    }
    --call_depth_;
    return Value::string(std::move(out));
  }

  [[gnu::noinline]] Value exec_call_block(const Stmt& s, Scope& scope) {
    // `caller` renders the block's body; a flag stops it from running once the
    // block is over (a macro could have stored it in a namespace).
    auto alive = std::make_shared<bool>(true);
    const Value caller = Value::function("caller", [this, &s, &scope, alive](Runtime&, CallArgs& a) {
      if (!*alive) throw TemplateError("caller() used outside its {% call %} block");
      if (a.positional.size() > s.params.size()) throw TemplateError("caller() got too many arguments");
      Scope inner{&scope, {}};
      for (std::size_t i = 0; i < s.params.size(); ++i) {
        const auto& [name, def] = s.params[i];
        inner.set(name, i < a.positional.size() ? a.positional[i]
                        : def                    ? eval(*def, scope)
                                                 : Value::undefined("'" + name + "' is undefined"));
      }
      std::string text;
      exec_body(s.body, inner, text);
      return Value::string(std::move(text));
    });
    const Expr& call = *s.expr;
    const Value callee = eval(*call.args[0], scope);
    CallArgs args = eval_args(call, scope);
    args.named.emplace_back("caller", caller);
    Value result;
    try {
      result = call_value(callee, args);
    } catch (...) {
      *alive = false;
      throw;
    }
    *alive = false;
    return result;
  }

  // ---- expressions ----

  Value eval(const Expr& e, Scope& scope) {
    DepthGuard guard(this);
    charge(1);
    line_ = e.line;
    switch (e.kind) {
      case ExprKind::kLiteral: return e.literal;
      case ExprKind::kName: return lookup(e.name, scope);
      case ExprKind::kList:
      case ExprKind::kTuple: return eval_sequence(e, scope);
      case ExprKind::kDict: return eval_dict(e, scope);
      case ExprKind::kGetAttr: return get_attr(*this, eval(*e.args[0], scope), e.name);
      case ExprKind::kGetItem: {
        const Value obj = eval(*e.args[0], scope);
        return get_item(*this, obj, eval(*e.args[1], scope));
      }
      case ExprKind::kSlice: return eval_slice(e, scope);
      case ExprKind::kCall: return eval_call(e, scope);
      case ExprKind::kFilter: return eval_filter(e, scope);
      case ExprKind::kTest: return eval_test(e, scope);
      case ExprKind::kNot: return Value::boolean(!eval(*e.args[0], scope).truthy());
      case ExprKind::kNeg: return negate(eval(*e.args[0], scope));
      case ExprKind::kPos: {
        Value v = eval(*e.args[0], scope);
        if (v.is_undefined()) fail_undefined(v);
        if (!v.is_number()) throw TemplateError("bad operand type for unary +: '" + v.type_name() + "'");
        return v.is_bool() ? Value::integer(v.as_int()) : v;
      }
      case ExprKind::kBinary: {
        const Value a = eval(*e.args[0], scope);
        return binary_op(*this, e.name, a, eval(*e.args[1], scope));
      }
      case ExprKind::kConcat: return eval_concat(e, scope);
      case ExprKind::kAnd: {
        Value a = eval(*e.args[0], scope);
        return a.truthy() ? eval(*e.args[1], scope) : a;
      }
      case ExprKind::kOr: {
        Value a = eval(*e.args[0], scope);
        return a.truthy() ? a : eval(*e.args[1], scope);
      }
      case ExprKind::kCompare: return eval_compare(e, scope);
      case ExprKind::kCondition:
        if (eval(*e.args[1], scope).truthy()) return eval(*e.args[0], scope);
        if (e.args[2]) return eval(*e.args[2], scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      case ExprKind::kBlockText: return block_text_ != nullptr ? *block_text_ : Value::string("");
    }
    return Value();
  }

  Value lookup(const std::string& name, Scope& scope) {
    if (const Value* v = scope.find(name)) return *v;
    if (std::optional<Value> g = global_value(name)) return *g;
    return Value::undefined("'" + name + "' is undefined");
  }

  [[gnu::noinline]] Value eval_sequence(const Expr& e, Scope& scope) {
    std::vector<Value> items;
    items.reserve(e.args.size());
    for (const ExprPtr& a : e.args) items.push_back(eval(*a, scope));
    return Value::list(std::move(items), e.kind == ExprKind::kTuple);
  }

  [[gnu::noinline]] Value eval_dict(const Expr& e, Scope& scope) {
    std::vector<std::pair<Value, Value>> entries;
    for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
      Value key = eval(*e.args[i], scope);
      if (key.is_list() || key.is_dict() || key.is_undefined())
        throw TemplateError("unhashable dict key of type '" + key.type_name() + "'");
      Value value = eval(*e.args[i + 1], scope);
      auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& kv) { return equals(kv.first, key); });
      if (it != entries.end()) it->second = std::move(value);
      else entries.emplace_back(std::move(key), std::move(value));
    }
    return Value::dict(std::move(entries));
  }

  [[gnu::noinline]] Value eval_slice(const Expr& e, Scope& scope) {
    const Value obj = eval(*e.args[0], scope);
    Value parts[3] = {Value::none(), Value::none(), Value::none()};
    for (int i = 0; i < 3; ++i)
      if (e.args[static_cast<std::size_t>(i) + 1]) parts[i] = eval(*e.args[static_cast<std::size_t>(i) + 1], scope);
    return slice(*this, obj, parts[0], parts[1], parts[2]);
  }

  CallArgs eval_args(const Expr& e, Scope& scope) {
    CallArgs args;
    for (std::size_t i = 1; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i], scope));
    for (const auto& [name, expr] : e.kwargs) args.named.emplace_back(name, eval(*expr, scope));
    return args;
  }

  Value call_value(const Value& callee, CallArgs& args) {
    if (callee.is_undefined()) fail_undefined(callee);
    if (!callee.is_function()) throw TemplateError("'" + callee.type_name() + "' object is not callable");
    return callee.function_obj().call(*this, args);
  }

  [[gnu::noinline]] Value eval_call(const Expr& e, Scope& scope) {
    const Value callee = eval(*e.args[0], scope);
    CallArgs args = eval_args(e, scope);
    return call_value(callee, args);
  }

  [[gnu::noinline]] Value eval_filter(const Expr& e, Scope& scope) {
    const Value subject = eval(*e.args[0], scope);
    CallArgs args = eval_args(e, scope);
    return apply_filter(*this, e.name, subject, args);
  }

  [[gnu::noinline]] Value eval_test(const Expr& e, Scope& scope) {
    const Value subject = eval(*e.args[0], scope);
    CallArgs args = eval_args(e, scope);
    return Value::boolean(apply_test(*this, e.name, subject, args) != e.negated);
  }

  [[gnu::noinline]] Value eval_concat(const Expr& e, Scope& scope) {
    std::string out;
    for (const ExprPtr& a : e.args) {
      const std::size_t before = out.size();
      eval(*a, scope).append_to(out);
      check_growth(out.size(), out.size() - before);
    }
    return Value::string(std::move(out));
  }

  [[gnu::noinline]] Value eval_compare(const Expr& e, Scope& scope) {
    Value left = eval(*e.args[0], scope);
    for (std::size_t i = 0; i < e.ops.size(); ++i) {
      Value right = eval(*e.args[i + 1], scope);
      const std::string& op = e.ops[i];
      if (op == "in" || op == "not in") charge(right.weight());
      else charge_compare(left, right);
      bool ok = false;
      if (op == "==") ok = equals(left, right);
      else if (op == "!=") ok = !equals(left, right);
      else if (op == "<") ok = less(left, right);
      else if (op == ">") ok = less(right, left);
      else if (op == "<=") ok = less(left, right) || equals(left, right);
      else if (op == ">=") ok = less(right, left) || equals(left, right);
      else if (op == "in") ok = contains(right, left);
      else ok = !contains(right, left);  // not in
      if (!ok) return Value::boolean(false);
      left = std::move(right);
    }
    return Value::boolean(true);
  }

  Scope* root_;
  int depth_ = 0;
  int call_depth_ = 0;
  int line_ = 0;
  const Value* block_text_ = nullptr;
};

}  // namespace

Template::Template(std::string_view source) : program_(parse_template(source)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const nlohmann::ordered_json& context, const RenderOptions& opts) const {
  if (!context.is_object()) throw TemplateError("the render context must be a JSON object");
  Scope root;
  try {
    for (auto it = context.begin(); it != context.end(); ++it) root.set(it.key(), Value::from_json(it.value()));
  } catch (const std::bad_alloc&) {
    throw TemplateError("out of memory while reading the render context");
  }
  Interpreter interpreter(opts, &root);
  std::string out;
  interpreter.run(program_->body, out);
  return out;
}

std::string render(std::string_view source, const nlohmann::ordered_json& context, const RenderOptions& opts) {
  return Template(source).render(context, opts);
}

}  // namespace slm::chat
