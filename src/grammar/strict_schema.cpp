// check_strict_schema (strict_schema.h).
#include "grammar/strict_schema.h"

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "base/error.h"

namespace slm::grammar {
namespace {

using Json = nlohmann::json;

struct Limits {
  size_t max_depth = 10;
  size_t max_properties = 5000;
  size_t max_enum_values = 1000;
  size_t max_text = 120000;
};

std::string escape_token(const std::string& key) {
  std::string out;
  for (const char c : key) {
    if (c == '~')
      out += "~0";
    else if (c == '/')
      out += "~1";
    else
      out += c;
  }
  return out;
}

class Checker {
 public:
  void check(const Json& s, const std::string& ptr, size_t depth) {
    if (!s.is_object()) fail(ptr, "a schema must be an object in strict mode");
    static const std::set<std::string> kAllowed = {
        "type",        "properties",  "required",         "additionalProperties",
        "items",       "enum",        "const",            "anyOf",
        "$ref",        "$defs",       "definitions",      "minItems",
        "maxItems",    "minimum",     "maximum",          "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "pattern",      "format",
        "minLength",   "maxLength",   "description",      "title",
        "default",     "examples",    "$schema",          "$id",
        "$comment"};
    for (auto it = s.begin(); it != s.end(); ++it)
      if (!kAllowed.count(it.key()))
        fail(ptr + "/" + escape_token(it.key()),
             "'" + it.key() + "' is not supported in strict mode");
    if (const auto e = s.find("enum"); e != s.end()) {
      if (!e->is_array()) fail(ptr + "/enum", "'enum' must be an array");
      n_enum_ += e->size();
      if (n_enum_ > limits_.max_enum_values)
        fail(ptr + "/enum", "more than " + std::to_string(limits_.max_enum_values) +
                                " enum values in the schema (strict mode limit)");
      for (const Json& v : *e)
        if (v.is_string()) add_text(v.get_ref<const std::string&>().size(), ptr + "/enum");
    }
    if (const auto c = s.find("const"); c != s.end() && c->is_string())
      add_text(c->get_ref<const std::string&>().size(), ptr + "/const");
    for (const char* defs : {"$defs", "definitions"}) {
      if (const auto d = s.find(defs); d != s.end()) {
        if (!d->is_object()) fail(ptr + "/" + defs, std::string("'") + defs + "' must be an object");
        for (auto it = d->begin(); it != d->end(); ++it)
          check(*it, ptr + "/" + defs + "/" + escape_token(it.key()), depth);
      }
    }
    if (const auto a = s.find("anyOf"); a != s.end()) {
      if (!a->is_array() || a->empty()) fail(ptr + "/anyOf", "'anyOf' must be a non-empty array");
      for (size_t i = 0; i < a->size(); ++i)
        check((*a)[i], ptr + "/anyOf/" + std::to_string(i), depth);
    }
    const bool is_object = has_type(s, "object") || s.contains("properties");
    const bool is_array = has_type(s, "array") || s.contains("items");
    if (is_object) {
      if (depth + 1 > limits_.max_depth)
        fail(ptr, "objects and arrays nest more than " + std::to_string(limits_.max_depth) +
                      " levels deep (strict mode limit)");
      const auto ap = s.find("additionalProperties");
      if (ap == s.end() || !(ap->is_boolean() && !ap->get<bool>()))
        fail(ptr, "'additionalProperties' must be false in strict mode");
      std::set<std::string> required;
      if (const auto r = s.find("required"); r != s.end()) {
        if (!r->is_array()) fail(ptr + "/required", "'required' must be an array");
        for (const Json& k : *r)
          if (k.is_string()) required.insert(k.get<std::string>());
      }
      if (const auto p = s.find("properties"); p != s.end()) {
        if (!p->is_object()) fail(ptr + "/properties", "'properties' must be an object");
        for (auto it = p->begin(); it != p->end(); ++it) {
          const std::string child = ptr + "/properties/" + escape_token(it.key());
          if (!required.count(it.key()))
            fail(child, "every property must be in 'required' in strict mode ('" + it.key() +
                            "' is not; make it nullable instead)");
          if (++n_properties_ > limits_.max_properties)
            fail(child, "more than " + std::to_string(limits_.max_properties) +
                            " properties in the schema (strict mode limit)");
          add_text(it.key().size(), child);
          check(*it, child, depth + 1);
        }
      }
    }
    if (is_array) {
      if (depth + 1 > limits_.max_depth)
        fail(ptr, "objects and arrays nest more than " + std::to_string(limits_.max_depth) +
                      " levels deep (strict mode limit)");
      if (const auto i = s.find("items"); i != s.end()) check(*i, ptr + "/items", depth + 1);
    }
  }

 private:
  static bool has_type(const Json& s, const char* name) {
    const auto t = s.find("type");
    if (t == s.end()) return false;
    if (t->is_string()) return *t == name;
    if (t->is_array())
      for (const Json& x : *t)
        if (x == name) return true;
    return false;
  }
  void add_text(size_t n, const std::string& ptr) {
    text_ += n;
    if (text_ > limits_.max_text)
      fail(ptr, "more than " + std::to_string(limits_.max_text) +
                    " characters of property names and enum values (strict mode limit)");
  }
  [[noreturn]] static void fail(const std::string& ptr, const std::string& why) {
    throw Error((ptr.empty() ? std::string("/") : ptr) + ": " + why);
  }

  Limits limits_;
  size_t n_properties_ = 0, n_enum_ = 0, text_ = 0;
};

}  // namespace

void check_strict_schema(std::string_view schema_json) {
  const Json s = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) throw Error("/: the schema is not valid JSON");
  if (!s.is_object()) throw Error("/: the root of a strict schema must be an object schema");
  if (s.contains("anyOf")) throw Error("/anyOf: the root of a strict schema must not be anyOf");
  const auto t = s.find("type");
  if (t == s.end() || *t != "object")
    throw Error("/type: the root of a strict schema must have \"type\": \"object\"");
  Checker().check(s, "", 0);
}

}  // namespace slm::grammar
