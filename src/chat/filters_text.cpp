// jinja2's text and number filters, as chat templates use them: trim,
// tojson, upper, lower, capitalize, title, replace, string, int, float, abs,
// round, indent, safe, escape. Input read as text treats Undefined as "".
// The registry is in filters.cpp.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/filters.h"
#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat::detail {

Value f_trim(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("trim", {"chars"});
  const std::string* chars = p[0] && p[0]->is_string() ? &p[0]->str() : nullptr;
  return text_like(rt, v, text::strip(v.to_string(), chars, true, true));
}

// Hugging Face's tojson (json.dumps, ensure_ascii off), which replaces
// jinja2's: a plain str, not jinja2's HTML-safe Markup (<>&' as \u003c...),
// so `"..."|safe + x|tojson` escapes the JSON as transformers renders it.
Value f_tojson(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  int indent = -1;
  if (p[1] && !p[1]->is_none())
    indent = static_cast<int>(std::clamp<int64_t>(int_arg(p[1], 0, "tojson"), 0, 64));
  std::string item_sep = indent >= 0 ? "," : ", ", key_sep = ": ";
  if (p[2] && !p[2]->is_none()) {
    const Value& s = *p[2];
    if (!s.is_list() || s.items().size() != 2 || !s.items()[0].is_string() ||
        !s.items()[1].is_string())
      throw TemplateError("tojson() separators must be a pair of strings");
    item_sep = s.items()[0].str();
    key_sep = s.items()[1].str();
  }
  rt.charge(64);
  return text_value(rt, v.to_json(indent, item_sep, key_sep, flag(p[3], false)));
}

Value f_upper(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("upper", {});
  return text_like(rt, v, text::to_upper(v.to_string()));
}
Value f_lower(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("lower", {});
  return text_like(rt, v, text::to_lower(v.to_string()));
}
Value f_capitalize(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("capitalize", {});
  return text_like(rt, v, text::capitalize(v.to_string()));
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
  if ((v.is_int() || v.is_bool()) && method == "common" && precision >= 0)
    return Value::integer(v.as_int());
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
  const double r = method == "floor"  ? std::floor(y)
                   : method == "ceil" ? std::ceil(y)
                                      : std::nearbyint(y);
  return Value::number(r / scale);
}

// jinja2's do_indent step by step, since Markup decides what gets escaped:
// with s a Markup every piece is one (nothing escaped); with s a str and the
// indent a Markup, `indent + line` escapes the line and the result depends on
// first and blank.
Value f_indent(Runtime& rt, const Value& v, CallArgs& a) {
  auto p = a.bind("indent", {"width", "first", "blank"});
  struct Str {
    std::string text;
    bool markup = false;
  };
  const auto esc = [](const Str& x) { return x.markup ? x.text : text::html_escape(x.text); };
  const auto add = [&](const Str& x, const Str& y) {
    if (!x.markup && !y.markup) return Str{x.text + y.text, false};
    return Str{esc(x) + esc(y), true};
  };
  // sep.join(items): Markup.join escapes its items; str.join gives a str.
  const auto join = [&](const Str& sep, const std::vector<Str>& items) {
    Str out{"", sep.markup};
    for (std::size_t i = 0; i < items.size(); ++i) {
      const std::size_t before = out.text.size();
      if (i > 0) out.text += sep.text;
      out.text += sep.markup ? esc(items[i]) : items[i].text;
      rt.check_growth(out.text.size(), out.text.size() - before);
    }
    return out;
  };
  Str indent;
  if (p[0] && p[0]->is_string())
    indent = {p[0]->str(), p[0]->is_markup()};
  else
    indent.text.assign(
        static_cast<std::size_t>(std::clamp<int64_t>(int_arg(p[0], 4, "indent"), 0, 256)), ' ');
  Str newline{"\n", false};
  if (v.is_markup()) indent.markup = newline.markup = true;
  // jinja2 appends a newline before splitting, so a trailing newline survives.
  std::vector<Str> lines;
  for (std::string& line : text::split_lines(v.to_string() + "\n"))
    lines.push_back({std::move(line), v.is_markup()});
  Str rv;
  if (flag(p[2], false)) {
    rv = join(add(newline, indent), lines);
  } else {
    rv = lines.front();
    if (lines.size() > 1) {
      std::vector<Str> rest;
      for (std::size_t i = 1; i < lines.size(); ++i) {
        rest.push_back(lines[i].text.empty() ? lines[i] : add(indent, lines[i]));
        rt.check_growth(rest.back().text.size(), rest.back().text.size());
      }
      rv = add(rv, add(newline, join(newline, rest)));
    }
  }
  if (flag(p[1], false)) rv = add(indent, rv);
  rt.check_size(rv.text.size());
  return rv.markup ? Value::markup(std::move(rv.text)) : Value::string(std::move(rv.text));
}

// |safe: Markup(value); a Markup stays as it is.
Value f_safe(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("safe", {});
  if (v.is_markup()) return v;
  std::string s = v.to_string();
  rt.check_size(s.size());
  return Value::markup(std::move(s));
}

// |escape, |e: markupsafe.escape, which leaves a Markup alone (no double
// escaping); |forceescape escapes a Markup's text too.
Value f_escape(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("escape", {});
  if (v.is_markup()) return v;
  std::string out = text::html_escape(v.to_string());
  rt.check_size(out.size());
  return Value::markup(std::move(out));
}

Value f_forceescape(Runtime& rt, const Value& v, CallArgs& a) {
  a.bind("forceescape", {});
  std::string out = text::html_escape(v.to_string());
  rt.check_size(out.size());
  return Value::markup(std::move(out));
}

}  // namespace slm::chat::detail
