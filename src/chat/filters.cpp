// The filter registry (name -> function; apply_filter, has_filter) and the
// argument helpers every filter shares. The filters themselves are jinja2's,
// as chat templates use them: text and number filters in filters_text.cpp,
// list and dict filters in filters_seq.cpp; tests are in jinja_tests.cpp.
// Filters that read their input as text treat Undefined as "" and return
// lists where jinja2 returns generators (so `|selectattr(...)|length` works
// here and not there).
#include "chat/filters.h"

#include <algorithm>

#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat {

namespace detail {

const Value& need(const std::optional<Value>& v, std::string_view fn, std::string_view param) {
  if (!v)
    throw TemplateError(std::string(fn) + "() is missing its '" + std::string(param) +
                        "' argument");
  return *v;
}

bool flag(const std::optional<Value>& v, bool fallback) {
  return v ? v->truthy() : fallback;
}

int64_t int_arg(const std::optional<Value>& v, int64_t fallback, std::string_view fn) {
  if (!v || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool())
    throw TemplateError(std::string(fn) + "() expects an integer, got " + v->type_name());
  return v->as_int();
}

Value text_value(Runtime& rt, std::string s) {
  rt.check_size(s.size());
  return Value::string(std::move(s));
}

Value text_like(Runtime& rt, const Value& like, std::string s) {
  rt.check_size(s.size());
  return like.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
}

Value attr_path(Runtime& rt, const Value& item, const std::string& path) {
  Value v = item;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    v = numeric && part.size() < 18 ? get_item(rt, v, Value::integer(std::stoll(part)))
                                    : get_item(rt, v, Value::string(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

Value fold_case(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(text::to_lower(v.str()));
  return v;
}

}  // namespace detail

namespace {

using namespace detail;

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"trim", f_trim},
    {"tojson", f_tojson},
    {"length", f_length},
    {"count", f_length},
    {"join", f_join},
    {"upper", f_upper},
    {"lower", f_lower},
    {"capitalize", f_capitalize},
    {"title", f_title},
    {"replace", f_replace},
    {"select", f_select},
    {"reject", f_reject},
    {"selectattr", f_selectattr},
    {"rejectattr", f_rejectattr},
    {"map", f_map},
    {"first", f_first},
    {"last", f_last},
    {"default", f_default},
    {"d", f_default},
    {"items", f_items},
    {"list", f_list},
    {"string", f_string},
    {"int", f_int},
    {"float", f_float},
    {"abs", f_abs},
    {"round", f_round},
    {"unique", f_unique},
    {"sort", f_sort},
    {"dictsort", f_dictsort},
    {"reverse", f_reverse},
    {"indent", f_indent},
    {"safe", f_safe},
    {"escape", f_escape},
    {"e", f_escape},
    {"min", f_min},
    {"max", f_max},
    {"sum", f_sum},
    {"attr", f_attr},
    {"forceescape", f_forceescape},
};

}  // namespace

bool has_filter(std::string_view name) {
  return std::any_of(std::begin(kFilters), std::end(kFilters),
                     [&](const FilterEntry& f) { return f.name == name; });
}

Value apply_filter(Runtime& rt, std::string_view name, const Value& subject, CallArgs& args) {
  for (const FilterEntry& f : kFilters)
    if (f.name == name) return f.fn(rt, subject, args);
  throw TemplateError("no filter named '" + std::string(name) + "'");
}

}  // namespace slm::chat
