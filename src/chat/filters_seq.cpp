// jinja2's list and dict filters, as chat templates use them: length, join,
// select / reject / selectattr / rejectattr, map, first, last, default,
// items, list, unique, sort, dictsort, reverse, min, max, sum, attr. They
// return lists where jinja2 returns generators (so `|selectattr(...)|length`
// works here and not there). The registry is in filters.cpp.
#include <algorithm>

#include "chat/filters.h"
#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat::detail {

namespace {

// select / reject / selectattr / rejectattr: (attr,) test name, then the test's arguments.
Value select_impl(Runtime& rt, const Value& v, CallArgs& a, bool by_attr, bool keep,
                  std::string_view fn) {
  std::size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.positional.empty()) throw TemplateError(std::string(fn) + "() needs an attribute name");
    attr = a.positional[next++].to_string();
  }
  std::string test;
  if (next < a.positional.size()) test = a.positional[next++].to_string();
  CallArgs test_args;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(next),
                              a.positional.end());
  test_args.named = a.named;
  std::vector<Value> out;
  if (!v.truthy())
    return Value::list({});  // jinja2 guards with `if value:`, so none selects nothing
  for (const Value& item : iterate(rt, v)) {
    const Value subject = by_attr ? attr_path(rt, item, attr) : item;
    CallArgs args = test_args;
    const bool pass = test.empty() ? subject.truthy() : apply_test(rt, test, subject, args);
    if (pass == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
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

}  // namespace

Value f_length(Runtime&, const Value& v, CallArgs& a) {
  a.bind("length", {});
  if (v.is_string()) return Value::integer(static_cast<int64_t>(text::char_count(v.str())));
  if (v.is_list()) return Value::integer(static_cast<int64_t>(v.items().size()));
  if (v.is_dict() && !v.is_namespace())
    return Value::integer(static_cast<int64_t>(v.dict_obj().entries.size()));
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

Value f_select(Runtime& rt, const Value& v, CallArgs& a) {
  return select_impl(rt, v, a, false, true, "select");
}
Value f_reject(Runtime& rt, const Value& v, CallArgs& a) {
  return select_impl(rt, v, a, false, false, "reject");
}
Value f_selectattr(Runtime& rt, const Value& v, CallArgs& a) {
  return select_impl(rt, v, a, true, true, "selectattr");
}
Value f_rejectattr(Runtime& rt, const Value& v, CallArgs& a) {
  return select_impl(rt, v, a, true, false, "rejectattr");
}

Value f_map(Runtime& rt, const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (!v.truthy()) return Value::list({});  // as jinja2's `if value:`
  const std::vector<Value> items = iterate(rt, v);
  std::optional<std::string> attribute;
  std::optional<Value> fallback;
  for (const auto& [k, val] : a.named) {
    if (k == "attribute")
      attribute = val.to_string();
    else if (k == "default")
      fallback = val;
  }
  if (attribute) {
    if (!a.positional.empty())
      throw TemplateError("map() takes either attribute= or a filter name");
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
  if (v.is_list())
    return v.items().empty() ? Value::undefined("No first item, sequence was empty.")
                             : v.items().front();
  const std::vector<Value> items = iterate(rt, v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("last", {});
  if (v.is_list())
    return v.items().empty() ? Value::undefined("No last item, sequence was empty.")
                             : v.items().back();
  const std::vector<Value> items = iterate(rt, v);
  if (items.empty()) return Value::undefined("No last item, sequence was empty.");
  // jinja2 takes it through reversed(), which indexes: a Markup's last character is a Markup.
  return v.is_markup() ? Value::markup(items.back().str()) : items.back();
}

Value f_default(Runtime&, const Value& v, CallArgs& a) {
  auto p = a.bind("default", {"default_value", "boolean"});
  const bool use_default = v.is_undefined() || (flag(p[1], false) && !v.truthy());
  return use_default ? p[0].value_or(Value::string("")) : v;
}

Value f_items(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("items", {});
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict() || v.is_namespace())
    throw TemplateError("can only get item pairs from a mapping, not " + v.type_name());
  rt.charge(v.dict_obj().entries.size());
  std::vector<Value> out;
  for (const auto& [k, val] : v.dict_obj().entries) out.push_back(Value::list({k, val}, true));
  return Value::list(std::move(out));
}

Value f_list(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("list", {});
  return Value::list(iterate(rt, v));
}

Value f_unique(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("unique", {"case_sensitive", "attribute"});
  const bool cs = flag(p[0], false);
  std::vector<Value> out, seen;
  for (const Value& item : iterate(rt, v)) {
    const Value key = fold_case(p[1] ? attr_path(rt, item, p[1]->to_string()) : item, cs);
    rt.charge_product(seen.size(), key.weight());
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); }))
      continue;
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
  if (by != "key" && by != "value")
    throw TemplateError("dictsort() can only sort by 'key' or 'value'");
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
  return text_like(rt, v, std::move(out));  // value[::-1]: a Markup stays one
}

Value f_min(Runtime& rt, const Value& v, CallArgs& a) {
  return min_max(rt, v, a, false, "min");
}
Value f_max(Runtime& rt, const Value& v, CallArgs& a) {
  return min_max(rt, v, a, true, "max");
}

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

}  // namespace slm::chat::detail
