// Operators: arithmetic (+ - * / // % ** and unary -), membership (`in`) and
// the items a for loop visits, plus CallArgs::bind for every built-in.
// Python's semantics throughout, except that integers are 64-bit and refuse
// to overflow. Attribute, item and slice access and the methods of str, dict
// and list are in access.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat {

std::vector<std::optional<Value>> CallArgs::bind(
    std::string_view fn, std::initializer_list<std::string_view> params) const {
  std::vector<std::optional<Value>> out(params.size());
  if (positional.size() > params.size()) {
    throw TemplateError(std::string(fn) + "() takes at most " + std::to_string(params.size()) +
                        " argument(s) (" + std::to_string(positional.size()) + " given)");
  }
  for (std::size_t i = 0; i < positional.size(); ++i) out[i] = positional[i];
  for (const auto& [name, value] : named) {
    std::size_t i = 0;
    for (std::string_view p : params) {
      if (p == name) break;
      ++i;
    }
    if (i == params.size())
      throw TemplateError(std::string(fn) + "() got an unexpected keyword argument '" + name + "'");
    if (out[i])
      throw TemplateError(std::string(fn) + "() got multiple values for argument '" + name + "'");
    out[i] = value;
  }
  return out;
}

namespace {

[[noreturn]] void type_error(std::string_view op, const Value& a, const Value& b) {
  if (std::string_view(op) == "+" && ((a.is_string() && !a.is_markup()) || a.is_list())) {
    const std::string t = a.type_name();
    throw TemplateError("can only concatenate " + t + " (not \"" + b.type_name() + "\") to " + t);
  }
  throw TemplateError("unsupported operand type(s) for " + std::string(op) + ": '" + a.type_name() +
                      "' and '" + b.type_name() + "'");
}

Value repeat(Runtime& rt, const Value& seq, int64_t count) {
  const std::size_t unit = seq.is_string() ? seq.str().size() : seq.items().size();
  if (count < 0 || unit == 0) count = 0;  // '' * 10**18 must not loop 10**18 times
  std::size_t total = 0;
  if (__builtin_mul_overflow(unit, static_cast<uint64_t>(count), &total))
    total = std::numeric_limits<std::size_t>::max();
  rt.check_size(total);
  if (seq.is_string()) {
    std::string out;
    out.reserve(total);
    for (int64_t i = 0; i < count; ++i) out += seq.str();
    return seq.is_markup() ? Value::markup(std::move(out))
                           : Value::string(std::move(out));  // Markup * n is Markup
  }
  rt.charge(total);
  std::vector<Value> out;
  out.reserve(total);
  for (int64_t i = 0; i < count; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out), seq.is_tuple());
}

[[noreturn]] void overflow() {
  throw TemplateError("integer overflow: the result does not fit in 64 bits");
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}

int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

Value int_pow(int64_t base, int64_t exp) {
  if (exp < 0) return Value::number(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = checked_mul(result, base);
    exp >>= 1;
    if (exp > 0) base = checked_mul(base, base);
  }
  return Value::integer(result);
}

}  // namespace

Value binary_op(Runtime& rt, std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool ints = (a.is_int() || a.is_bool()) && (b.is_int() || b.is_bool());
  const bool nums = a.is_number() && b.is_number();
  const char c0 = op[0];
  if (op == "+") {
    if (ints) return Value::integer(checked_add(a.as_int(), b.as_int()));
    if (nums) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      if (a.is_markup() || b.is_markup()) {
        // Markup.__add__ / __radd__: the str side is escaped.
        const auto safe = [](const Value& v) {
          return v.is_markup() ? v.str() : text::html_escape(v.str());
        };
        std::string out = safe(a) + safe(b);
        rt.check_size(out.size());
        return Value::markup(std::move(out));
      }
      rt.check_size(a.str().size() + b.str().size());
      return Value::string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      const std::size_t n = a.items().size() + b.items().size();
      rt.check_size(n);
      rt.charge(n);
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(items), a.is_tuple());
    }
  } else if (op == "-") {
    if (ints) return Value::integer(checked_sub(a.as_int(), b.as_int()));
    if (nums) return Value::number(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (ints) return Value::integer(checked_mul(a.as_int(), b.as_int()));
    if (nums) return Value::number(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool()))
      return repeat(rt, a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool()))
      return repeat(rt, b, a.as_int());
  } else if (op == "/") {
    if (nums) {
      if (b.as_double() == 0) throw TemplateError("division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
  } else if (op == "//" || c0 == '%') {
    if (ints) {
      const int64_t x = a.as_int(), y = b.as_int();
      if (y == 0)
        throw TemplateError(op == "//" ? "integer division or modulo by zero"
                                       : "integer modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) {
        if (op == "//") overflow();
        return Value::integer(0);
      }
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward negative infinity
        --q;
        m += y;
      }
      return Value::integer(op == "//" ? q : m);
    }
    if (nums) {
      const double x = a.as_double(), y = b.as_double();
      if (y == 0) throw TemplateError("float division by zero");
      if (op == "//") return Value::number(std::floor(x / y));
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value::number(m);
    }
    if (a.is_string())
      throw TemplateError("printf-style '%' formatting of strings is not supported");
  } else if (op == "**") {
    if (ints) return int_pow(a.as_int(), b.as_int());
    if (nums) return Value::number(std::pow(a.as_double(), b.as_double()));
  }
  type_error(op, a, b);
}

Value negate(const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_int() || v.is_bool()) {
    return Value::integer(checked_sub(0, v.as_int()));
  }
  if (v.is_float()) return Value::number(-v.as_double());
  throw TemplateError("bad operand type for unary -: '" + v.type_name() + "'");
}

bool contains(const Value& haystack, const Value& needle) {
  if (haystack.is_string()) {
    if (needle.is_undefined()) fail_undefined(needle);
    if (!needle.is_string())
      throw TemplateError("'in <string>' requires string as left operand, not " +
                          needle.type_name());
    return haystack.str().find(needle.str()) != std::string::npos;
  }
  if (haystack.is_list()) {
    return std::any_of(haystack.items().begin(), haystack.items().end(),
                       [&](const Value& v) { return equals(v, needle); });
  }
  if (haystack.is_dict() && !haystack.is_namespace())
    return haystack.dict_obj().find(needle) != nullptr;
  if (haystack.is_undefined()) return false;
  throw TemplateError("argument of type '" + haystack.type_name() + "' is not iterable");
}

std::vector<Value> iterate(Runtime& rt, const Value& v) {
  std::vector<Value> out;
  if (v.is_list()) {
    rt.charge(v.items().size());
    return v.items();
  }
  if (v.is_dict() && !v.is_namespace()) {
    rt.charge(v.dict_obj().entries.size());
    for (const auto& [k, val] : v.dict_obj().entries) out.push_back(k);
    return out;
  }
  if (v.is_string()) {
    const std::string& s = v.str();
    rt.charge(s.size());
    const std::vector<std::size_t> starts = text::char_starts(s);
    for (std::size_t i = 0; i + 1 < starts.size(); ++i)
      out.push_back(Value::string(s.substr(starts[i], starts[i + 1] - starts[i])));
    return out;
  }
  if (v.is_undefined()) return out;
  throw TemplateError("'" + v.type_name() + "' object is not iterable");
}

}  // namespace slm::chat
