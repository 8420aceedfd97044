#include "chat/value.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "chat/text.h"

namespace slm::chat {

namespace {

int max_child_depth(const std::vector<Value>& items) {
  int d = 0;
  for (const Value& v : items) d = std::max(d, v.depth());
  return d;
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

[[noreturn]] void print_limit() {
  throw TemplateError("printing a value exceeds " + std::to_string(kMaxPrintedBytes) + " bytes");
}

bool any_namespace(const std::vector<Value>& items) {
  return std::any_of(items.begin(), items.end(), [](const Value& v) { return v.has_namespace(); });
}

void check_depth(int depth) {
  if (depth > kMaxValueDepth)
    throw TemplateError("value nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
}

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxValueDepth)
    throw TemplateError("context nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw TemplateError("context integer " + std::to_string(u) + " is out of range");
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<Value, Value>> entries;
      entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        entries.emplace_back(Value::string(it.key()), from_json_at(it.value(), depth + 1));
      return Value::dict(std::move(entries));
    }
    default:
      throw TemplateError("context holds a value JSON cannot express in a template (binary)");
  }
}

void json_key(std::string& out, const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString:
      text::append_json_string(out, key.str());
      return;
    case Value::Kind::kInt:
      text::append_json_string(out, std::to_string(key.as_int()));
      return;
    case Value::Kind::kFloat:
      text::append_json_string(out, text::float_repr(key.as_double()));
      return;
    case Value::Kind::kBool:
      text::append_json_string(out, key.as_bool() ? "true" : "false");
      return;
    case Value::Kind::kNone:
      text::append_json_string(out, "null");
      return;
    default:
      throw TemplateError("keys must be str, int, float, bool or None, not " + key.type_name());
  }
}

struct JsonWriter {
  int indent;
  std::string_view item_sep;
  std::string_view key_sep;
  bool sort_keys;
  std::string out;

  void newline(int level) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(level), ' ');
  }

  void write(const Value& v, int level) {
    if (out.size() > kMaxPrintedBytes) print_limit();
    switch (v.kind()) {
      case Value::Kind::kNone:
        out += "null";
        return;
      case Value::Kind::kBool:
        out += v.as_bool() ? "true" : "false";
        return;
      case Value::Kind::kInt:
        out += std::to_string(v.as_int());
        return;
      case Value::Kind::kFloat: {
        const double f = v.as_double();
        if (std::isnan(f))
          out += "NaN";
        else if (std::isinf(f))
          out += f < 0 ? "-Infinity" : "Infinity";
        else
          out += text::float_repr(f);
        return;
      }
      case Value::Kind::kString:
        text::append_json_string(out, v.str());
        return;
      case Value::Kind::kList: {
        const auto& items = v.items();
        if (items.empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (std::size_t i = 0; i < items.size(); ++i) {
          if (i > 0) out += item_sep;
          if (indent >= 0) newline(level + 1);
          write(items[i], level + 1);
        }
        if (indent >= 0) newline(level);
        out += ']';
        return;
      }
      case Value::Kind::kDict: {
        if (v.is_namespace()) break;
        std::vector<const std::pair<Value, Value>*> entries;
        for (const auto& e : v.dict_obj().entries) entries.push_back(&e);
        if (entries.empty()) {
          out += "{}";
          return;
        }
        if (sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto* a, const auto* b) { return less(a->first, b->first); });
        }
        out += '{';
        for (std::size_t i = 0; i < entries.size(); ++i) {
          if (i > 0) out += item_sep;
          if (indent >= 0) newline(level + 1);
          json_key(out, entries[i]->first);
          out += key_sep;
          write(entries[i]->second, level + 1);
        }
        if (indent >= 0) newline(level);
        out += '}';
        return;
      }
      default:
        break;
    }
    const std::string type = v.is_undefined()   ? "Undefined"
                             : v.is_namespace() ? "Namespace"
                                                : v.type_name();
    throw TemplateError("Object of type " + type + " is not JSON serializable");
  }
};

}  // namespace

const Value* DictObject::find(const Value& key) const {
  for (const auto& [k, v] : entries)
    if (equals(k, key)) return &v;
  return nullptr;
}

const Value* DictObject::find(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

void DictObject::set(Value key, Value value) {
  depth = std::max(depth, value.depth() + 1);
  check_depth(depth);
  for (auto& [k, v] : entries) {
    if (equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::undefined(std::string hint) {
  Value v;
  v.data_ = UndefinedTag{std::make_shared<const std::string>(std::move(hint))};
  return v;
}

Value Value::none() {
  Value v;
  v.data_ = NoneTag{};
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.data_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.data_ = i;
  return v;
}

Value Value::number(double f) {
  Value v;
  v.data_ = f;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.data_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::markup(std::string s) {
  Value v = string(std::move(s));
  v.markup_ = true;
  return v;
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  auto obj = std::make_shared<ListObject>();
  obj->depth = max_child_depth(items) + 1;
  check_depth(obj->depth);
  obj->holds_namespace = any_namespace(items);
  for (const Value& v : items) obj->weight = saturating_add(obj->weight, v.weight());
  obj->items = std::move(items);
  obj->is_tuple = is_tuple;
  Value v;
  v.data_ = ListPtr(std::move(obj));
  return v;
}

Value Value::dict(std::vector<std::pair<Value, Value>> entries) {
  auto obj = std::make_shared<DictObject>();
  int d = 0;
  for (const auto& [k, val] : entries) {
    d = std::max({d, k.depth(), val.depth()});
    obj->holds_namespace = obj->holds_namespace || k.has_namespace() || val.has_namespace();
    obj->weight = saturating_add(obj->weight, saturating_add(k.weight(), val.weight()));
  }
  obj->depth = d + 1;
  check_depth(obj->depth);
  obj->entries = std::move(entries);
  Value v;
  v.data_ = DictPtr(std::move(obj));
  return v;
}

Value Value::make_namespace(std::vector<std::pair<Value, Value>> entries) {
  Value v = dict({});
  v.namespace_obj().is_namespace = true;
  for (auto& [k, val] : entries) {
    if (val.has_namespace()) throw TemplateError("a namespace cannot hold another namespace");
    v.namespace_obj().set(std::move(k), std::move(val));
  }
  return v;
}

Value Value::function(std::string name, NativeFunction fn) {
  Value v;
  v.data_ = std::make_shared<const FunctionObject>(FunctionObject{std::move(name), std::move(fn)});
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  return from_json_at(j, 0);
}

int64_t Value::as_int() const {
  if (is_bool()) return as_bool() ? 1 : 0;
  return std::get<int64_t>(data_);
}

double Value::as_double() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_int());
}

const std::string& Value::undefined_hint() const {
  static const std::string kNoHint;
  const auto& hint = std::get<UndefinedTag>(data_).hint;
  return hint ? *hint : kNoHint;
}

int Value::depth() const {
  if (is_list()) return list_obj().depth;
  if (is_dict()) return dict_obj().depth;
  return 0;
}

uint64_t Value::weight() const {
  if (is_string()) return 1 + str().size() / 64;
  if (is_list()) return list_obj().weight;
  if (is_dict()) return is_namespace() ? 1 : dict_obj().weight;
  return 1;
}

bool Value::has_namespace() const {
  if (is_list()) return list_obj().holds_namespace;
  if (is_dict()) return dict_obj().is_namespace || dict_obj().holds_namespace;
  return false;
}

bool Value::truthy() const {
  switch (kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_double() != 0.0;
    case Kind::kString:
      return !str().empty();
    case Kind::kList:
      return !items().empty();
    case Kind::kDict:
      return is_namespace() || !dict_obj().entries.empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

void Value::append_to(std::string& out) const {
  if (is_string())
    out += str();
  else if (!is_undefined())
    append_repr(out, out.size() + kMaxPrintedBytes);
}

std::string Value::to_string() const {
  std::string out;
  append_to(out);
  return out;
}

std::string Value::repr() const {
  std::string out;
  append_repr(out, kMaxPrintedBytes);
  return out;
}

void Value::append_repr(std::string& out, std::size_t limit) const {
  switch (kind()) {
    case Kind::kUndefined:
      out += "Undefined";
      break;
    case Kind::kNone:
      out += "None";
      break;
    case Kind::kBool:
      out += as_bool() ? "True" : "False";
      break;
    case Kind::kInt:
      out += std::to_string(as_int());
      break;
    case Kind::kFloat:
      out += text::float_repr(as_double());
      break;
    case Kind::kString:
      if (str().size() > limit) print_limit();
      if (markup_) out += "Markup(";
      out += text::str_repr(str());
      if (markup_) out += ')';
      break;
    case Kind::kList: {
      const bool tuple = is_tuple();
      out += tuple ? "(" : "[";
      const auto& xs = items();
      for (std::size_t i = 0; i < xs.size(); ++i) {
        if (i > 0) out += ", ";
        xs[i].append_repr(out, limit);
        if (out.size() > limit) print_limit();
      }
      if (tuple && xs.size() == 1) out += ',';
      out += tuple ? ")" : "]";
      break;
    }
    case Kind::kDict: {
      out += is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, v] : dict_obj().entries) {
        if (!first) out += ", ";
        first = false;
        k.append_repr(out, limit);
        out += ": ";
        v.append_repr(out, limit);
        if (out.size() > limit) print_limit();
      }
      out += is_namespace() ? "}>" : "}";
      break;
    }
    case Kind::kFunction:
      out += "<function " + function_obj().name + ">";
      break;
  }
  if (out.size() > limit) print_limit();
}

std::string Value::to_json(int indent, std::string_view item_sep, std::string_view key_sep,
                           bool sort_keys) const {
  JsonWriter w{indent, item_sep, key_sep, sort_keys, {}};
  w.write(*this, 0);
  return std::move(w.out);
}

std::string Value::type_name() const {
  switch (kind()) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return markup_ ? "Markup" : "str";
    case Kind::kList:
      return is_tuple() ? "tuple" : "list";
    case Kind::kDict:
      return is_namespace() ? "Namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "";
}

std::string Value::object_phrase() const {
  if (is_none()) return "'None'";
  // Built piecewise: `"'" + type_name()` trips GCC 12's -Wrestrict false positive.
  std::string phrase(1, '\'');
  phrase += type_name();
  phrase += " object'";
  return phrase;
}

bool equals(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.str() == b.str();
    case K::kList: {
      if (a.is_tuple() != b.is_tuple()) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case K::kDict: {
      if (a.is_namespace() || b.is_namespace()) return &a.dict_obj() == &b.dict_obj();
      const auto& x = a.dict_obj().entries;
      if (x.size() != b.dict_obj().entries.size()) return false;
      for (const auto& [k, v] : x) {
        const Value* other = b.dict_obj().find(k);
        if (other == nullptr || !equals(v, *other)) return false;
      }
      return true;
    }
    case K::kFunction:
      return &a.function_obj() == &b.function_obj();
    default:
      return false;
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  throw TemplateError("'<' not supported between instances of '" + a.type_name() + "' and '" +
                      b.type_name() + "'");
}

void fail_undefined(const Value& v) {
  const std::string& hint = v.undefined_hint();
  throw TemplateError(hint.empty() ? "value is undefined" : hint);
}

}  // namespace slm::chat
