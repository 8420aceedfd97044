// Attribute, item and slice access (obj.name, obj[key], obj[a:b:c]) and the
// methods of str, dict and list. Python's semantics, except that nothing can
// modify a list or a dict (Hugging Face renders in jinja2's
// ImmutableSandboxedEnvironment) and that attribute names beginning with an
// underscore are refused. Operators are in ops.cpp.
#include <algorithm>

#include "base/utf8.h"
#include "chat/runtime.h"
#include "chat/text.h"

namespace slm::chat {

namespace {

// Python's slice.indices(): the first index, the bound and the step for a sequence of n items.
std::vector<std::size_t> slice_indices(int64_t n, const Value& start_v, const Value& stop_v,
                                       const Value& step_v) {
  const auto as_index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    if (!v.is_int() && !v.is_bool())
      throw TemplateError(std::string("slice ") + what + " must be an integer or None");
    return v.as_int();
  };
  const int64_t step = as_index(step_v, "step").value_or(1);
  if (step == 0) throw TemplateError("slice step cannot be zero");
  const int64_t lower = step < 0 ? -1 : 0;
  const int64_t upper = step < 0 ? n - 1 : n;
  const auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t i = *v;
    if (i < 0) {
      i = i < -n ? lower : i + n;  // compared first, so no overflow
      return std::max(i, lower);
    }
    return std::min(i, upper);
  };
  const int64_t start = clamp(as_index(start_v, "start"), step < 0 ? upper : lower);
  const int64_t stop = clamp(as_index(stop_v, "stop"), step < 0 ? lower : upper);
  std::vector<std::size_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    out.push_back(static_cast<std::size_t>(i));
    if (__builtin_add_overflow(i, step, &i)) break;
  }
  return out;
}

// ---- methods ----

std::vector<std::string> split_whitespace(std::string_view s, int64_t maxsplit) {
  std::vector<std::string> out;
  std::size_t i = 0, len = 1;
  const auto space_at = [&](std::size_t k) { return text::is_space(utf8::decode(s, k, &len)); };
  while (true) {
    while (i < s.size() && space_at(i)) i += len;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      // Python keeps the rest, trailing whitespace stripped.
      out.push_back(text::strip(s.substr(i), nullptr, false, true));
      break;
    }
    std::size_t j = i;
    while (j < s.size() && !space_at(j)) j += len;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string> split_on(std::string_view s, std::string_view sep, int64_t maxsplit) {
  if (sep.empty()) throw TemplateError("empty separator");
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    const std::size_t hit = s.find(sep, pos);
    if (hit == std::string_view::npos) break;
    out.emplace_back(s.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  out.emplace_back(s.substr(pos));
  return out;
}

std::string format_method(const std::string& fmt, const CallArgs& a) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if ((c == '{' || c == '}') && i + 1 < fmt.size() && fmt[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c == '}') throw TemplateError("Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    const std::size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw TemplateError("Single '{' encountered in format string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find_first_of(":!.[") != std::string::npos)
      throw TemplateError("str.format() supports only {}, {N} and {name} fields");
    const Value* v = nullptr;
    if (field.empty() ||
        std::all_of(field.begin(), field.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      const std::size_t index = field.empty() ? auto_index++ : std::stoul(field.substr(0, 6));
      if (index < a.positional.size()) v = &a.positional[index];
      if (v == nullptr)
        throw TemplateError("Replacement index " + std::to_string(index) + " out of range");
    } else {
      for (const auto& [name, value] : a.named)
        if (name == field) v = &value;
      if (v == nullptr) throw TemplateError("format() has no argument '" + field + "'");
    }
    v->append_to(out);
    i = close;
  }
  return out;
}

bool starts_or_ends(const std::string& s, const Value& affix, bool start) {
  const auto one = [&](const Value& a) {
    if (!a.is_string())
      throw TemplateError("startswith/endswith takes a str or a tuple of str, not " +
                          a.type_name());
    const std::string& x = a.str();
    if (x.size() > s.size()) return false;
    return start ? s.compare(0, x.size(), x) == 0
                 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) return std::any_of(affix.items().begin(), affix.items().end(), one);
  return one(affix);
}

Value str_method(Runtime& rt, const std::string& s, const std::string& name, CallArgs& a) {
  const auto opt_str = [](const std::optional<Value>& v) -> const std::string* {
    if (!v || v->is_none()) return nullptr;
    if (!v->is_string()) throw TemplateError("expected a str argument, got " + v->type_name());
    return &v->str();
  };
  const auto opt_int = [](const std::optional<Value>& v, int64_t fallback) {
    if (!v || v->is_none()) return fallback;
    if (!v->is_int() && !v->is_bool())
      throw TemplateError("expected an int argument, got " + v->type_name());
    return v->as_int();
  };
  const auto need = [](const std::optional<Value>& v, const std::string& fn) -> const Value& {
    if (!v) throw TemplateError(fn + "() is missing an argument");
    return *v;
  };
  rt.charge(s.size() / 8);
  if (name == "startswith" || name == "endswith") {
    auto p = a.bind(name, {"affix"});
    return Value::boolean(starts_or_ends(s, need(p[0], name), name == "startswith"));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    auto p = a.bind(name, {"chars"});
    return Value::string(text::strip(s, opt_str(p[0]), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    auto p = a.bind(name, {"sep", "maxsplit"});
    const std::string* sep = opt_str(p[0]);
    const int64_t maxsplit = opt_int(p[1], -1);
    std::vector<std::string> parts;
    if (name == "rsplit" && maxsplit >= 0) {
      // Split from the right: reverse, split, reverse back (sep reversed too).
      std::string rs(s.rbegin(), s.rend());
      std::vector<std::string> rparts;
      if (sep == nullptr)
        rparts = split_whitespace(rs, maxsplit);
      else
        rparts = split_on(rs, std::string(sep->rbegin(), sep->rend()), maxsplit);
      for (auto it = rparts.rbegin(); it != rparts.rend(); ++it)
        parts.emplace_back(it->rbegin(), it->rend());
    } else {
      parts = sep == nullptr ? split_whitespace(s, maxsplit) : split_on(s, *sep, maxsplit);
    }
    std::vector<Value> items;
    for (auto& part : parts) items.push_back(Value::string(std::move(part)));
    rt.charge(items.size());
    return Value::list(std::move(items));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    a.bind(name, {});
    if (name == "upper") return Value::string(text::to_upper(s));
    if (name == "lower") return Value::string(text::to_lower(s));
    if (name == "title") return Value::string(text::title_method(s));
    return Value::string(text::capitalize(s));
  }
  if (name == "replace") {
    auto p = a.bind(name, {"old", "new", "count"});
    const std::string* from = opt_str(p[0]);
    const std::string* to = opt_str(p[1]);
    if (from == nullptr || to == nullptr) throw TemplateError("replace() needs two str arguments");
    const std::size_t hits = from->empty() ? text::char_count(s) + 1 : s.size() / from->size();
    rt.check_size(s.size() + hits * to->size());
    return Value::string(text::replace(s, *from, *to, opt_int(p[2], -1)));
  }
  if (name == "format") {
    std::string out = format_method(s, a);
    rt.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (name == "join") {
    auto p = a.bind(name, {"iterable"});
    std::string out;
    bool first = true;
    for (const Value& v : iterate(rt, need(p[0], name))) {
      if (!v.is_string())
        throw TemplateError("sequence item: expected str instance, " + v.type_name() + " found");
      const std::size_t before = out.size();
      if (!first) out += s;
      first = false;
      out += v.str();
      rt.check_growth(out.size(), out.size() - before);
    }
    return Value::string(std::move(out));
  }
  if (name == "find" || name == "count") {
    auto p = a.bind(name, {"sub"});
    const std::string* sub = opt_str(p[0]);
    if (sub == nullptr) throw TemplateError(name + "() needs a str argument");
    if (name == "find") {
      const std::size_t hit = s.find(*sub);
      return Value::integer(
          hit == std::string::npos ? -1 : static_cast<int64_t>(text::char_count(s.substr(0, hit))));
    }
    if (sub->empty()) return Value::integer(static_cast<int64_t>(text::char_count(s) + 1));
    int64_t n = 0;
    for (std::size_t pos = s.find(*sub); pos != std::string::npos;
         pos = s.find(*sub, pos + sub->size()))
      ++n;
    return Value::integer(n);
  }
  if (name == "splitlines") {
    a.bind(name, {});
    std::vector<Value> items;
    for (auto& line : text::split_lines(s)) items.push_back(Value::string(std::move(line)));
    return Value::list(std::move(items));
  }
  // is*(): ASCII classes, enough for the checks chat templates make.
  a.bind(name, {});
  const auto all = [&](auto pred) { return !s.empty() && std::all_of(s.begin(), s.end(), pred); };
  if (name == "isdigit") return Value::boolean(all([](char c) { return c >= '0' && c <= '9'; }));
  if (name == "isspace")
    return Value::boolean(
        all([](char c) { return text::is_space(static_cast<unsigned char>(c)); }));
  if (name == "isalpha")
    return Value::boolean(all([](char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }));
  if (name == "isalnum")
    return Value::boolean(all(
        [](char c) { return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9'); }));
  if (name == "islower") return Value::boolean(text::to_lower(s) == s && text::to_upper(s) != s);
  return Value::boolean(text::to_upper(s) == s && text::to_lower(s) != s);  // isupper
}

// A method of a Markup, as markupsafe 3 wraps str's: the text-returning ones
// return Markup, replace escapes its replacement, join escapes the items,
// format escapes what it formats, split/rsplit/splitlines give Markups; the
// rest are str's.
Value markup_method(Runtime& rt, const Value& self, const std::string& name, CallArgs& a) {
  const auto escape = [&](const Value& v) {
    if (v.is_markup()) return v;
    std::string e = text::html_escape(v.to_string());
    rt.check_size(e.size());
    return Value::markup(std::move(e));
  };
  const auto markup = [](Value v) { return v.is_string() ? Value::markup(v.str()) : v; };
  CallArgs args = a;
  if (name == "replace") {
    if (args.positional.size() > 1 && args.positional[1].is_string())
      args.positional[1] = escape(args.positional[1]);
    for (auto& [k, v] : args.named)
      if (k == "new" && v.is_string()) v = escape(v);
    return markup(str_method(rt, self.str(), name, args));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip" || name == "upper" ||
      name == "lower" || name == "title" || name == "capitalize")
    return markup(str_method(rt, self.str(), name, args));
  if (name == "format") {
    for (Value& v : args.positional) v = escape(v);
    for (auto& [k, v] : args.named) v = escape(v);
    return markup(str_method(rt, self.str(), name, args));
  }
  if (name == "join") {
    auto p = args.bind(name, {"iterable"});
    if (!p[0]) throw TemplateError("join() is missing an argument");
    std::vector<Value> items;
    for (const Value& v : iterate(rt, *p[0])) items.push_back(escape(v));
    CallArgs escaped;
    escaped.positional.push_back(Value::list(std::move(items)));
    return markup(str_method(rt, self.str(), name, escaped));
  }
  Value out = str_method(rt, self.str(), name, args);
  if (name == "split" || name == "rsplit" || name == "splitlines") {
    std::vector<Value> items;
    for (const Value& v : out.items()) items.push_back(markup(v));
    return Value::list(std::move(items));
  }
  return out;
}

constexpr std::string_view kStrMethods[] = {
    "startswith", "endswith", "strip",      "lstrip",  "rstrip",  "split",   "rsplit", "upper",
    "lower",      "title",    "capitalize", "replace", "format",  "join",    "find",   "count",
    "splitlines", "isdigit",  "isspace",    "isalpha", "isalnum", "islower", "isupper"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};
constexpr std::string_view kListReadMethods[] = {"index", "count"};
constexpr std::string_view kMutators[] = {"append",  "extend", "insert",  "pop",    "remove",
                                          "clear",   "sort",   "reverse", "update", "setdefault",
                                          "popitem", "add",    "discard"};

template <std::size_t N>
bool among(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value dict_method(Runtime& rt, const Value& d, const std::string& name, CallArgs& a) {
  const auto& entries = d.dict_obj().entries;
  rt.charge(entries.size());
  if (name == "get") {
    auto p = a.bind(name, {"key", "default"});
    if (!p[0]) throw TemplateError("get() is missing its key");
    const Value* v = d.dict_obj().find(*p[0]);
    return v != nullptr ? *v : p[1].value_or(Value::none());
  }
  a.bind(name, {});
  std::vector<Value> out;
  for (const auto& [k, v] : entries) {
    if (name == "items")
      out.push_back(Value::list({k, v}, true));
    else
      out.push_back(name == "keys" ? k : v);
  }
  return Value::list(std::move(out));
}

Value list_method(Runtime& rt, const Value& l, const std::string& name, CallArgs& a) {
  auto p = a.bind(name, {"value"});
  if (!p[0]) throw TemplateError(name + "() is missing its argument");
  rt.charge(l.weight());
  int64_t n = 0, first = -1;
  for (std::size_t i = 0; i < l.items().size(); ++i) {
    if (!equals(l.items()[i], *p[0])) continue;
    if (first < 0) first = static_cast<int64_t>(i);
    ++n;
  }
  if (name == "count") return Value::integer(n);
  if (first < 0) throw TemplateError(p[0]->repr() + " is not in list");
  return Value::integer(first);
}

Value bound(const Value& self, const std::string& name,
            Value (*method)(Runtime&, const Value&, const std::string&, CallArgs&)) {
  return Value::function(
      name, [self, name, method](Runtime& rt, CallArgs& a) { return method(rt, self, name, a); });
}

}  // namespace

Value get_attr(Runtime& rt, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  const bool dict = obj.is_dict();
  if (!name.empty() && name[0] == '_') {
    // Python's dunder attributes are the way out of a sandbox; here there are
    // no host objects behind values, and the names are refused outright.
    if (dict) {
      if (const Value* v = obj.dict_obj().find(std::string_view(name))) return *v;
    }
    throw TemplateError("access to attribute '" + name + "' of '" + obj.type_name() +
                        "' object is not allowed in the template sandbox");
  }
  if (dict && !obj.is_namespace() && among(kDictMethods, name))
    return bound(obj, name, dict_method);
  if (dict) {
    if (const Value* v = obj.dict_obj().find(std::string_view(name))) return *v;
  }
  if (obj.is_string() && among(kStrMethods, name)) {
    return Value::function(name, [s = obj, name](Runtime& r, CallArgs& a) {
      return s.is_markup() ? markup_method(r, s, name, a) : str_method(r, s.str(), name, a);
    });
  }
  if (obj.is_list() && among(kListReadMethods, name)) return bound(obj, name, list_method);
  if ((obj.is_list() || dict) && among(kMutators, name)) {
    throw TemplateError("templates cannot modify values: " + obj.type_name() + "." + name +
                        "() is not allowed in the sandbox");
  }
  (void)rt;
  return Value::undefined(obj.object_phrase() + " has no attribute '" + name + "'");
}

Value get_item(Runtime& rt, const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (key.is_undefined()) fail_undefined(key);
  if (obj.is_dict()) {
    if (const Value* v = obj.dict_obj().find(key)) return *v;
    return Value::undefined(obj.object_phrase() + " has no attribute " + key.repr());
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      const int64_t n = static_cast<int64_t>(obj.items().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.items()[static_cast<std::size_t>(i)];
    } else {
      rt.charge(obj.str().size() / 8);
      const std::vector<std::size_t> starts = text::char_starts(obj.str());
      const int64_t n = static_cast<int64_t>(starts.size()) - 1;
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        const auto k = static_cast<std::size_t>(i);
        std::string c = obj.str().substr(starts[k], starts[k + 1] - starts[k]);
        // Markup[i] is a Markup.
        return obj.is_markup() ? Value::markup(std::move(c)) : Value::string(std::move(c));
      }
    }
    return Value::undefined(obj.object_phrase() + " has no element " + key.repr());
  }
  if (key.is_string()) return get_attr(rt, obj, key.str());
  return Value::undefined(obj.object_phrase() + " has no element " + key.repr());
}

Value slice(Runtime& rt, const Value& obj, const Value& start, const Value& stop,
            const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_list()) {
    const auto idx = slice_indices(static_cast<int64_t>(obj.items().size()), start, stop, step);
    rt.charge(idx.size());
    std::vector<Value> out;
    out.reserve(idx.size());
    for (std::size_t i : idx) out.push_back(obj.items()[i]);
    return Value::list(std::move(out), obj.is_tuple());
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    rt.charge(s.size() / 4);
    const std::vector<std::size_t> starts = text::char_starts(s);
    const auto idx = slice_indices(static_cast<int64_t>(starts.size()) - 1, start, stop, step);
    std::string out;
    for (std::size_t i : idx) out.append(s, starts[i], starts[i + 1] - starts[i]);
    return obj.is_markup() ? Value::markup(std::move(out)) : Value::string(std::move(out));
  }
  throw TemplateError("'" + obj.type_name() + "' object is not subscriptable");
}

}  // namespace slm::chat
