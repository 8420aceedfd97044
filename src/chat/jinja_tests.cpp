// jinja2's tests (`x is defined`, `n is divisibleby 3`, `x is sameas y`, ...)
// as chat templates use them, and their registry: apply_test, has_test.
#include <algorithm>

#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat {

namespace {

using TestFn = bool (*)(Runtime&, const Value&, CallArgs&);

const Value& test_arg(CallArgs& a, std::string_view test) {
  if (a.positional.size() != 1 || !a.named.empty())
    throw TemplateError("test '" + std::string(test) + "' takes one argument");
  return a.positional[0];
}

bool no_args(CallArgs& a, std::string_view test) {
  if (!a.positional.empty() || !a.named.empty())
    throw TemplateError("test '" + std::string(test) + "' takes no arguments");
  return true;
}

int64_t int_for_test(const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_int() && !v.is_bool()) throw TemplateError("expected an integer, got " + v.type_name());
  return v.as_int();
}

bool t_defined(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "defined") && !v.is_undefined();
}
bool t_undefined(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "undefined") && v.is_undefined();
}
bool t_none(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "none") && v.is_none();
}
bool t_string(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "string") && v.is_string();
}
bool t_mapping(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "mapping") && v.is_dict() && !v.is_namespace();
}
bool t_iterable(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "iterable") &&
         (v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()) || v.is_undefined());
}
bool t_sequence(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "sequence") &&
         (v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()));
}
bool t_number(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "number") && v.is_number();
}
bool t_integer(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "integer") && v.is_int();
}
bool t_float(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "float") && v.is_float();
}
bool t_boolean(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "boolean") && v.is_bool();
}
bool t_true(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "true") && v.is_bool() && v.as_bool();
}
bool t_false(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "false") && v.is_bool() && !v.as_bool();
}
bool t_callable(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "callable") && v.is_function();
}
bool t_even(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "even") && int_for_test(v) % 2 == 0;
}
bool t_odd(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "odd") && int_for_test(v) % 2 != 0;
}
bool t_divisibleby(Runtime&, const Value& v, CallArgs& a) {
  const int64_t d = int_for_test(test_arg(a, "divisibleby"));
  if (d == 0) throw TemplateError("integer modulo by zero");
  return d == -1 || int_for_test(v) % d == 0;
}
// The argument of a comparing test, with the comparison's cost charged.
const Value& compared(Runtime& rt, const Value& v, CallArgs& a, std::string_view test) {
  const Value& other = test_arg(a, test);
  rt.charge_compare(v, other);
  return other;
}

bool t_in(Runtime& rt, const Value& v, CallArgs& a) {
  const Value& seq = test_arg(a, "in");
  rt.charge(seq.weight());
  return contains(seq, v);
}
bool t_eq(Runtime& rt, const Value& v, CallArgs& a) {
  return equals(v, compared(rt, v, a, "equalto"));
}
bool t_ne(Runtime& rt, const Value& v, CallArgs& a) {
  return !equals(v, compared(rt, v, a, "ne"));
}
bool t_lt(Runtime& rt, const Value& v, CallArgs& a) {
  return less(v, compared(rt, v, a, "lt"));
}
bool t_le(Runtime& rt, const Value& v, CallArgs& a) {
  return !less(compared(rt, v, a, "le"), v);
}
bool t_gt(Runtime& rt, const Value& v, CallArgs& a) {
  return less(compared(rt, v, a, "gt"), v);
}
bool t_ge(Runtime& rt, const Value& v, CallArgs& a) {
  return !less(v, compared(rt, v, a, "ge"));
}
bool t_sameas(Runtime& rt, const Value& v, CallArgs& a) {
  const Value& other = compared(rt, v, a, "sameas");
  if (v.kind() != other.kind()) return false;
  if (v.is_list()) return &v.list_obj() == &other.list_obj();
  if (v.is_dict()) return &v.dict_obj() == &other.dict_obj();
  return equals(v, other);
}
bool t_lower(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "lower") && v.is_string() && text::to_lower(v.str()) == v.str();
}
bool t_upper(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "upper") && v.is_string() && text::to_upper(v.str()) == v.str();
}
bool t_escaped(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "escaped") && v.is_markup();
}
bool t_filter(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "filter") && v.is_string() && has_filter(v.str());
}
bool t_test(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "test") && v.is_string() && has_test(v.str());
}

struct TestEntry {
  std::string_view name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"defined", t_defined},
    {"undefined", t_undefined},
    {"none", t_none},
    {"string", t_string},
    {"mapping", t_mapping},
    {"iterable", t_iterable},
    {"sequence", t_sequence},
    {"number", t_number},
    {"integer", t_integer},
    {"float", t_float},
    {"boolean", t_boolean},
    {"true", t_true},
    {"false", t_false},
    {"callable", t_callable},
    {"even", t_even},
    {"odd", t_odd},
    {"divisibleby", t_divisibleby},
    {"in", t_in},
    {"equalto", t_eq},
    {"eq", t_eq},
    {"==", t_eq},
    {"ne", t_ne},
    {"!=", t_ne},
    {"lt", t_lt},
    {"lessthan", t_lt},
    {"<", t_lt},
    {"le", t_le},
    {"<=", t_le},
    {"gt", t_gt},
    {"greaterthan", t_gt},
    {">", t_gt},
    {"ge", t_ge},
    {">=", t_ge},
    {"sameas", t_sameas},
    {"lower", t_lower},
    {"upper", t_upper},
    {"escaped", t_escaped},
    {"filter", t_filter},
    {"test", t_test},
};

}  // namespace

bool has_test(std::string_view name) {
  return std::any_of(std::begin(kTests), std::end(kTests),
                     [&](const TestEntry& t) { return t.name == name; });
}

bool apply_test(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args) {
  for (const TestEntry& t : kTests)
    if (t.name == name) return t.fn(rt, subject, args);
  throw TemplateError("no test named '" + std::string(name) + "'");
}

}  // namespace slm::chat
