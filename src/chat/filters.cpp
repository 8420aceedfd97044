// jinja2's filters and tests, as chat templates use them. Filters that read
// their input as text treat Undefined as "" and return lists where jinja2
// returns generators (so `|selectattr(...)|length` works here and not there).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat {

namespace {

using FilterFn = Value (*)(Runtime&, const Value&, CallArgs&);
using TestFn = bool (*)(Runtime&, const Value&, CallArgs&);

const Value& need(const std::optional<Value>& v, std::string_view fn, std::string_view param) {
  if (!v) throw TemplateError(std::string(fn) + "() is missing its '" + std::string(param) + "' argument");
  return *v;
}

bool flag(const std::optional<Value>& v, bool fallback) { return v ? v->truthy() : fallback; }

int64_t int_arg(const std::optional<Value>& v, int64_t fallback, std::string_view fn) {
  if (!v || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool()) throw TemplateError(std::string(fn) + "() expects an integer, got " + v->type_name());
  return v->as_int();
}

Value text_value(Runtime& rt, std::string s) {
  rt.check_size(s.size());
  return Value::string(std::move(s));
}

// The value at a dotted attribute path ("function.name", "0"), as jinja2's make_attrgetter.
Value attr_path(Runtime& rt, const Value& item, const std::string& path) {
  Value v = item;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = numeric && part.size() < 18 ? get_item(rt, v, Value::integer(std::stoll(part))) : get_item(rt, v, Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Sort / unique key: strings lowercased unless case_sensitive.
Value fold_case(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(text::to_lower(v.str()));
  return v;
}

// ---- filters ----

Value f_trim(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("trim", {"chars"});
  const std::string* chars = p[0] && p[0]->is_string() ? &p[0]->str() : nullptr;
  return text_value(rt, text::strip(v.to_string(), chars, true, true));
}

Value f_tojson(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  int indent = -1;
  if (p[1] && !p[1]->is_none()) indent = static_cast<int>(std::clamp<int64_t>(int_arg(p[1], 0, "tojson"), 0, 64));
  std::string item_sep = indent >= 0 ? "," : ", ", key_sep = ": ";
  if (p[2] && !p[2]->is_none()) {
    const Value& s = *p[2];
    if (!s.is_list() || s.items().size() != 2 || !s.items()[0].is_string() || !s.items()[1].is_string())
      throw TemplateError("tojson() separators must be a pair of strings");
    item_sep = s.items()[0].str();
    key_sep = s.items()[1].str();
  }
  rt.charge(64);
  return text_value(rt, v.to_json(indent, item_sep, key_sep, flag(p[3], false)));
}

Value f_length(Runtime&, const Value& v, CallArgs& a) {
  a.bind("length", {});
  if (v.is_string()) return Value::integer(static_cast<int64_t>(text::char_count(v.str())));
  if (v.is_list()) return Value::integer(static_cast<int64_t>(v.items().size()));
  if (v.is_dict() && !v.is_namespace()) return Value::integer(static_cast<int64_t>(v.dict_obj().entries.size()));
  if (v.is_undefined()) return Value::integer(0);
  throw TemplateError("object of type '" + v.type_name() + "' has no len()");
}

Value f_join(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("join", {"d", "attribute"});
  const std::string sep = p[0] ? p[0]->to_string() : "";
  std::string out;
  bool first = true;
  for (const Value& item : iterate(rt, v)) {
    if (!first) out += sep;
    first = false;
    const std::size_t before = out.size();
    (p[1] ? attr_path(rt, item, p[1]->to_string()) : item).append_to(out);
    rt.check_growth(out.size(), out.size() - before);
  }
  return Value::string(std::move(out));
}

Value f_upper(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("upper", {});
  return text_value(rt, text::to_upper(v.to_string()));
}
Value f_lower(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("lower", {});
  return text_value(rt, text::to_lower(v.to_string()));
}
Value f_capitalize(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("capitalize", {});
  return text_value(rt, text::capitalize(v.to_string()));
}
Value f_title(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("title", {});
  return text_value(rt, text::title_filter(v.to_string()));
}

Value f_replace(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("replace", {"old", "new", "count"});
  const std::string s = v.to_string();
  const std::string from = need(p[0], "replace", "old").to_string();
  const std::string to = need(p[1], "replace", "new").to_string();
  const std::size_t hits = from.empty() ? text::char_count(s) + 1 : s.size() / from.size();
  rt.check_size(s.size() + hits * to.size());
  return Value::string(text::replace(s, from, to, int_arg(p[2], -1, "replace")));
}

// select / reject / selectattr / rejectattr: (attr,) test name, then the test's arguments.
Value select_impl(Runtime& rt, const Value& v, CallArgs& a, bool by_attr, bool keep, std::string_view fn) {
  std::size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.positional.empty()) throw TemplateError(std::string(fn) + "() needs an attribute name");
    attr = a.positional[next++].to_string();
  }
  std::string test;
  if (next < a.positional.size()) test = a.positional[next++].to_string();
  CallArgs test_args;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next), a.positional.end());
  test_args.named = a.named;
  std::vector<Value> out;
  if (!v.truthy()) return Value::list({});  // jinja2 guards with `if value:`, so none selects nothing
  for (const Value& item : iterate(rt, v)) {
    const Value subject = by_attr ? attr_path(rt, item, attr) : item;
    CallArgs args = test_args;
    const bool pass = test.empty() ? subject.truthy() : apply_test(rt, test, subject, args);
    if (pass == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}
Value f_select(Runtime& rt, const Value& v, CallArgs& a) { return select_impl(rt, v, a, false, true, "select"); }
Value f_reject(Runtime& rt, const Value& v, CallArgs& a) { return select_impl(rt, v, a, false, false, "reject"); }
Value f_selectattr(Runtime& rt, const Value& v, CallArgs& a) { return select_impl(rt, v, a, true, true, "selectattr"); }
Value f_rejectattr(Runtime& rt, const Value& v, CallArgs& a) { return select_impl(rt, v, a, true, false, "rejectattr"); }

Value f_map(Runtime& rt, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (!v.truthy()) return Value::list({});  // as jinja2's `if value:`
  const std::vector<Value> items = iterate(rt, v);
  std::optional<std::string> attribute;
  std::optional<Value> fallback;
  for (const auto& [k, val] : a.named) {
    if (k == "attribute") attribute = val.to_string();
    else if (k == "default") fallback = val;
  }
  if (attribute) {
    if (!a.positional.empty()) throw TemplateError("map() takes either attribute= or a filter name");
    for (const Value& item : items) {
      Value x = attr_path(rt, item, *attribute);
      out.push_back(x.is_undefined() && fallback ? *fallback : x);
    }
    return Value::list(std::move(out));
  }
  if (a.positional.empty()) throw TemplateError("map() needs a filter name or attribute=");
  const std::string filter = a.positional[0].to_string();
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.named = a.named;
  for (const Value& item : items) {
    CallArgs args = rest;
    out.push_back(apply_filter(rt, filter, item, args));
  }
  return Value::list(std::move(out));
}

Value f_first(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("first", {});
  if (v.is_list()) return v.items().empty() ? Value::undefined("No first item, sequence was empty.") : v.items().front();
  const std::vector<Value> items = iterate(rt, v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("last", {});
  if (v.is_list()) return v.items().empty() ? Value::undefined("No last item, sequence was empty.") : v.items().back();
  const std::vector<Value> items = iterate(rt, v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_default(Runtime&, const Value& v, CallArgs& a) {
  auto p = a.bind("default", {"default_value", "boolean"});
  const bool use_default = v.is_undefined() || (flag(p[1], false) && !v.truthy());
  return use_default ? p[0].value_or(Value::string("")) : v;
}

Value f_items(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("items", {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict() || v.is_namespace()) throw TemplateError("can only get item pairs from a mapping, not " + v.type_name());
  rt.charge(v.dict_obj().entries.size());
  std::vector<Value> out;
  for (const auto& [k, val] : v.dict_obj().entries) out.push_back(Value::list({k, val}, true));
  return Value::list(std::move(out));
}

Value f_list(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("list", {});
  return Value::list(iterate(rt, v));
}

Value f_string(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("string", {});
  return v.is_string() ? v : text_value(rt, v.to_string());
}

Value f_int(Runtime&, const Value& v, CallArgs& a) {
  auto p = a.bind("int", {"default", "base"});
  const Value fallback = p[0].value_or(Value::integer(0));
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    const double f = std::trunc(v.as_double());
    if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return fallback;
    return Value::integer(static_cast<int64_t>(f));
  }
  if (!v.is_string()) return fallback;
  const std::string s = text::strip(v.str(), nullptr, true, true);
  const int base = static_cast<int>(int_arg(p[1], 10, "int"));
  if (s.empty() || base < 2 || base > 36) return fallback;
  std::string digits;
  for (char c : s)
    if (c != '_') digits += c;
  errno = 0;
  char* end = nullptr;
  const long long i = std::strtoll(digits.c_str(), &end, base);
  if (errno == 0 && end != nullptr && *end == '\0') return Value::integer(i);
  // jinja2 falls back to int(float(value)).
  const double f = std::strtod(digits.c_str(), &end);
  if (end != nullptr && *end == '\0' && std::isfinite(f) && std::fabs(f) < 9.2e18)
    return Value::integer(static_cast<int64_t>(f));
  return fallback;
}

Value f_float(Runtime&, const Value& v, CallArgs& a) {
  auto p = a.bind("float", {"default"});
  if (v.is_number()) return Value::number(v.as_double());
  if (v.is_string()) {
    const std::string s = text::strip(v.str(), nullptr, true, true);
    char* end = nullptr;
    const double f = std::strtod(s.c_str(), &end);
    if (!s.empty() && end != nullptr && *end == '\0') return Value::number(f);
  }
  return p[0].value_or(Value::number(0.0));
}

Value f_abs(Runtime&, const Value& v, CallArgs& a) {
  a.bind("abs", {});
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  if (v.is_int() || v.is_bool()) return v.as_int() < 0 ? negate(v) : Value::integer(v.as_int());
  throw TemplateError("bad operand type for abs(): '" + v.type_name() + "'");
}

Value f_round(Runtime&, const Value& v, CallArgs& a) {
  auto p = a.bind("round", {"precision", "method"});
  const int64_t precision = std::clamp<int64_t>(int_arg(p[0], 0, "round"), -30, 30);
  const std::string method = p[1] ? p[1]->to_string() : "common";
  if (!v.is_number()) throw TemplateError("round() needs a number, not " + v.type_name());
  if (method != "common" && method != "floor" && method != "ceil")
    throw TemplateError("round() method must be common, floor or ceil");
  if ((v.is_int() || v.is_bool()) && method == "common" && precision >= 0) return Value::integer(v.as_int());
  const double x = v.as_double();
  if (!std::isfinite(x)) return Value::number(x);
  if (method == "common" && precision >= 0) {
    // printf rounds the exact binary value half-to-even, as Python's round() does.
    char buf[400];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);
    return Value::number(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double y = x * scale;
  const double r = method == "floor" ? std::floor(y) : method == "ceil" ? std::ceil(y) : std::nearbyint(y);
  return Value::number(r / scale);
}

Value f_unique(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("unique", {"case_sensitive", "attribute"});
  const bool cs = flag(p[0], false);
  std::vector<Value> out, seen;
  for (const Value& item : iterate(rt, v)) {
    const Value key = fold_case(p[1] ? attr_path(rt, item, p[1]->to_string()) : item, cs);
    rt.charge_product(seen.size(), key.weight());
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_sort(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("sort", {"reverse", "case_sensitive", "attribute"});
  const bool reverse = flag(p[0], false), cs = flag(p[1], false);
  std::vector<std::pair<Value, Value>> keyed;  // (key, item)
  for (const Value& item : iterate(rt, v))
    keyed.emplace_back(fold_case(p[2] ? attr_path(rt, item, p[2]->to_string()) : item, cs), item);
  rt.charge_product(v.weight(), 64);  // n log n comparisons, each as deep as its items
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? less(y.first, x.first) : less(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& [k, item] : keyed) out.push_back(std::move(item));
  return Value::list(std::move(out));
}

Value f_dictsort(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("dictsort", {"case_sensitive", "by", "reverse"});
  const bool cs = flag(p[0], false), reverse = flag(p[2], false);
  const std::string by = p[1] ? p[1]->to_string() : "key";
  if (by != "key" && by != "value") throw TemplateError("dictsort() can only sort by 'key' or 'value'");
  CallArgs none;
  const Value pairs = f_items(rt, v, none);
  std::vector<Value> out = pairs.items();
  const std::size_t pos = by == "key" ? 0 : 1;
  rt.charge_product(v.weight(), 64);
  std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
    const Value kx = fold_case(x.items()[pos], cs), ky = fold_case(y.items()[pos], cs);
    return reverse ? less(ky, kx) : less(kx, ky);
  });
  return Value::list(std::move(out));
}

Value f_reverse(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("reverse", {});
  std::vector<Value> items = iterate(rt, v);
  std::reverse(items.begin(), items.end());
  if (!v.is_string()) return Value::list(std::move(items));
  std::string out;
  for (const Value& c : items) out += c.str();
  return Value::string(std::move(out));
}

Value f_indent(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("indent", {"width", "first", "blank"});
  std::string pad;
  if (p[0] && p[0]->is_string()) pad = p[0]->str();
  else pad.assign(static_cast<std::size_t>(std::clamp<int64_t>(int_arg(p[0], 4, "indent"), 0, 256)), ' ');
  // jinja2 appends a newline before splitting, so a trailing newline survives.
  const std::vector<std::string> lines = text::split_lines(v.to_string() + "\n");
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    const bool indent_this = i == 0 ? flag(p[1], false) : (flag(p[2], false) || !lines[i].empty());
    const std::size_t before = out.size();
    if (indent_this) out += pad;
    out += lines[i];
    rt.check_growth(out.size(), out.size() - before);
  }
  return Value::string(std::move(out));
}

Value f_safe(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("safe", {});
  return v.is_string() ? v : text_value(rt, v.to_string());
}

Value f_escape(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("escape", {});
  std::string out;
  for (char c : v.to_string()) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return text_value(rt, std::move(out));
}

Value min_max(Runtime& rt, const Value& v, CallArgs& a, bool want_max, std::string_view fn) {
  auto p = a.bind(fn, {"case_sensitive", "attribute"});
  const bool cs = flag(p[0], false);
  rt.charge(v.weight());
  std::optional<Value> best, best_key;
  for (const Value& item : iterate(rt, v)) {
    const Value key = fold_case(p[1] ? attr_path(rt, item, p[1]->to_string()) : item, cs);
    if (!best || (want_max ? less(*best_key, key) : less(key, *best_key))) {
      best = item;
      best_key = key;
    }
  }
  return best ? *best : Value::undefined(std::string("No aggregated item, sequence was empty."));
}
Value f_min(Runtime& rt, const Value& v, CallArgs& a) { return min_max(rt, v, a, false, "min"); }
Value f_max(Runtime& rt, const Value& v, CallArgs& a) { return min_max(rt, v, a, true, "max"); }

Value f_sum(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("sum", {"attribute", "start"});
  Value total = p[1].value_or(Value::integer(0));
  for (const Value& item : iterate(rt, v))
    total = binary_op(rt, "+", total, p[0] ? attr_path(rt, item, p[0]->to_string()) : item);
  return total;
}

Value f_attr(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("attr", {"name"});
  return get_attr(rt, v, need(p[0], "attr", "name").to_string());
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"trim", f_trim},       {"tojson", f_tojson},       {"length", f_length},     {"count", f_length},
    {"join", f_join},       {"upper", f_upper},         {"lower", f_lower},       {"capitalize", f_capitalize},
    {"title", f_title},     {"replace", f_replace},     {"select", f_select},     {"reject", f_reject},
    {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"map", f_map}, {"first", f_first},
    {"last", f_last},       {"default", f_default},     {"d", f_default},         {"items", f_items},
    {"list", f_list},       {"string", f_string},       {"int", f_int},           {"float", f_float},
    {"abs", f_abs},         {"round", f_round},         {"unique", f_unique},     {"sort", f_sort},
    {"dictsort", f_dictsort}, {"reverse", f_reverse},   {"indent", f_indent},     {"safe", f_safe},
    {"escape", f_escape},   {"e", f_escape},            {"min", f_min},           {"max", f_max},
    {"sum", f_sum},         {"attr", f_attr},
};

// ---- tests ----

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

bool t_defined(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "defined") && !v.is_undefined(); }
bool t_undefined(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "undefined") && v.is_undefined(); }
bool t_none(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "none") && v.is_none(); }
bool t_string(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "string") && v.is_string(); }
bool t_mapping(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "mapping") && v.is_dict() && !v.is_namespace();
}
bool t_iterable(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "iterable") && (v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()) || v.is_undefined());
}
bool t_sequence(Runtime&, const Value& v, CallArgs& a) {
  return no_args(a, "sequence") && (v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace()));
}
bool t_number(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "number") && v.is_number(); }
bool t_integer(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "integer") && v.is_int(); }
bool t_float(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "float") && v.is_float(); }
bool t_boolean(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "boolean") && v.is_bool(); }
bool t_true(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "true") && v.is_bool() && v.as_bool(); }
bool t_false(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "false") && v.is_bool() && !v.as_bool(); }
bool t_callable(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "callable") && v.is_function(); }
bool t_even(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "even") && int_for_test(v) % 2 == 0; }
bool t_odd(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "odd") && int_for_test(v) % 2 != 0; }
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
bool t_eq(Runtime& rt, const Value& v, CallArgs& a) { return equals(v, compared(rt, v, a, "equalto")); }
bool t_ne(Runtime& rt, const Value& v, CallArgs& a) { return !equals(v, compared(rt, v, a, "ne")); }
bool t_lt(Runtime& rt, const Value& v, CallArgs& a) { return less(v, compared(rt, v, a, "lt")); }
bool t_le(Runtime& rt, const Value& v, CallArgs& a) { return !less(compared(rt, v, a, "le"), v); }
bool t_gt(Runtime& rt, const Value& v, CallArgs& a) { return less(compared(rt, v, a, "gt"), v); }
bool t_ge(Runtime& rt, const Value& v, CallArgs& a) { return !less(v, compared(rt, v, a, "ge")); }
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
bool t_escaped(Runtime&, const Value&, CallArgs& a) { return no_args(a, "escaped") && false; }
bool t_filter(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "filter") && v.is_string() && has_filter(v.str()); }
bool t_test(Runtime&, const Value& v, CallArgs& a) { return no_args(a, "test") && v.is_string() && has_test(v.str()); }

struct TestEntry {
  std::string_view name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},         {"string", t_string},
    {"mapping", t_mapping},   {"iterable", t_iterable},   {"sequence", t_sequence}, {"number", t_number},
    {"integer", t_integer},   {"float", t_float},         {"boolean", t_boolean},   {"true", t_true},
    {"false", t_false},       {"callable", t_callable},   {"even", t_even},         {"odd", t_odd},
    {"divisibleby", t_divisibleby}, {"in", t_in},         {"equalto", t_eq},        {"eq", t_eq},
    {"==", t_eq},             {"ne", t_ne},               {"!=", t_ne},             {"lt", t_lt},
    {"lessthan", t_lt},       {"<", t_lt},                {"le", t_le},             {"<=", t_le},
    {"gt", t_gt},             {"greaterthan", t_gt},      {">", t_gt},              {"ge", t_ge},
    {">=", t_ge},             {"sameas", t_sameas},       {"lower", t_lower},       {"upper", t_upper},
    {"escaped", t_escaped},   {"filter", t_filter},       {"test", t_test},
};

}  // namespace

bool has_filter(std::string_view name) {
  return std::any_of(std::begin(kFilters), std::end(kFilters), [&](const FilterEntry& f) { return f.name == name; });
}

bool has_test(std::string_view name) {
  return std::any_of(std::begin(kTests), std::end(kTests), [&](const TestEntry& t) { return t.name == name; });
}

Value apply_filter(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args) {
  for (const FilterEntry& f : kFilters)
    if (f.name == name) return f.fn(rt, subject, args);
  throw TemplateError("no filter named '" + std::string(name) + "'");
}

bool apply_test(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args) {
  for (const TestEntry& t : kTests)
    if (t.name == name) return t.fn(rt, subject, args);
  throw TemplateError("no test named '" + std::string(name) + "'");
}

}  // namespace slm::chat
