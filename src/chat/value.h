// Values of the template language, with Python's semantics: None/True/False,
// 64-bit ints that refuse to overflow (Python's would grow without bound),
// floats printed like repr(), insertion-ordered dicts, and jinja2's Undefined.
//
// Containers are shared and immutable once built, as under Hugging Face's
// ImmutableSandboxedEnvironment; the one exception is a namespace(), whose
// attributes `set ns.x = ...` assigns. A namespace may not hold a namespace,
// so values never form cycles. Every container records its nesting depth, and
// building one deeper than kMaxValueDepth fails, so that printing, comparing
// and destroying values never recurse deeper than that.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "chat/template.h"

namespace slm::chat {

inline constexpr int kMaxValueDepth = 128;
// Printing a value (repr, str, tojson) fails past this many bytes, so that one
// print of a value built by sharing ([x, x] doubled 60 times) stays bounded;
// callers charge what they print to the render's work budget.
inline constexpr std::size_t kMaxPrintedBytes = std::size_t{64} << 20;

class Value;
class Runtime;
struct CallArgs;

struct ListObject {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;
  bool holds_namespace = false;  // some item is or holds a namespace
  uint64_t weight = 1;           // cost of a deep walk (comparison); saturates
};

struct DictObject {
  std::vector<std::pair<Value, Value>> entries;  // insertion order
  bool is_namespace = false;
  int depth = 1;
  bool holds_namespace = false;  // some value is or holds a namespace (never true of a namespace)
  uint64_t weight = 1;           // cost of a deep walk; namespaces compare by identity and weigh 1

  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  // Replaces the value of an existing key in place, or appends.
  void set(Value key, Value value);
};

using NativeFunction = std::function<Value(Runtime&, CallArgs&)>;

struct FunctionObject {
  std::string name;
  NativeFunction call;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // undefined, with no hint
  static Value undefined(std::string hint);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s);
  // markupsafe's Markup: a str jinja2 treats as already HTML-safe (what |safe,
  // |escape and |forceescape return). With autoescape off, as chat templates
  // render, it matters only in what it is combined with: Markup + str and
  // str + Markup escape the str, Markup's methods escape their str arguments
  // and return Markup, and a few filters keep it (see ops.cpp, access.cpp,
  // filters_text.cpp). Everything else treats it as the str it holds.
  static Value markup(std::string s);
  // The list / tuple / dict factories compute the nesting depth and throw
  // TemplateError past kMaxValueDepth.
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(std::vector<std::pair<Value, Value>> entries);
  static Value make_namespace(std::vector<std::pair<Value, Value>> entries);
  static Value function(std::string name, NativeFunction fn);
  // Throws TemplateError on integers outside int64 and on nesting past kMaxValueDepth.
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }  // str and Markup
  bool is_markup() const { return markup_; }
  bool is_list() const { return kind() == Kind::kList; }  // lists and tuples
  bool is_tuple() const { return is_list() && list_obj().is_tuple; }
  bool is_dict() const { return kind() == Kind::kDict; }  // dicts and namespaces
  bool is_namespace() const { return is_dict() && dict_obj().is_namespace; }
  bool is_function() const { return kind() == Kind::kFunction; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const;    // bools count as 0/1, as in Python
  double as_double() const;  // any number
  const std::string& str() const { return *std::get<StrPtr>(data_); }
  const std::string& undefined_hint() const;
  const ListObject& list_obj() const { return *std::get<ListPtr>(data_); }
  const std::vector<Value>& items() const { return list_obj().items; }
  const DictObject& dict_obj() const { return *std::get<DictPtr>(data_); }
  DictObject& namespace_obj() const { return *std::get<DictPtr>(data_); }
  const FunctionObject& function_obj() const { return *std::get<FnPtr>(data_); }
  int depth() const;  // 0 for scalars
  // Work units a deep comparison of this value may take (strings count their length).
  uint64_t weight() const;
  // True when this is a namespace or a container with one inside.
  bool has_namespace() const;

  // Python's truth value (Undefined is false).
  bool truthy() const;
  // jinja2's {{ value }}: str(), with Undefined printing as "". These and
  // repr() / to_json() throw TemplateError past kMaxPrintedBytes.
  std::string to_string() const;
  void append_to(std::string& out) const;
  // Python's repr(), used inside printed containers.
  std::string repr() const;
  void append_repr(std::string& out, std::size_t limit) const;
  // json.dumps(value, ensure_ascii=False, indent=indent, separators=..., sort_keys=...)
  // as Hugging Face's tojson calls it; indent < 0 means none.
  std::string to_json(int indent, std::string_view item_sep, std::string_view key_sep,
                      bool sort_keys) const;
  // Python's type name ("str", "dict", "NoneType"...), for error messages.
  std::string type_name() const;
  // jinja2's "'dict object'" phrase for undefined hints.
  std::string object_phrase() const;

 private:
  struct UndefinedTag {
    std::shared_ptr<const std::string> hint;
  };
  struct NoneTag {};
  using StrPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const ListObject>;
  using DictPtr = std::shared_ptr<DictObject>;
  using FnPtr = std::shared_ptr<const FunctionObject>;

  std::variant<UndefinedTag, NoneTag, bool, int64_t, double, StrPtr, ListPtr, DictPtr, FnPtr> data_;
  bool markup_ = false;  // a string that is a Markup
};

// Python's ==, and < for the types that order (numbers, strings, lists, tuples);
// less() throws TemplateError for other pairs, as Python's TypeError.
bool equals(const Value& a, const Value& b);
bool less(const Value& a, const Value& b);

// Throws the UndefinedError jinja2 raises when an undefined value is used.
[[noreturn]] void fail_undefined(const Value& v);

}  // namespace slm::chat
