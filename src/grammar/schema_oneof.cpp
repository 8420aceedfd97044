// oneOf for the JSON Schema compiler: "exactly one branch" equals anyOf when
// no instance can satisfy two branches. exclusive() proves that for common
// shapes -- branch types that cannot overlap, const/enum value sets that are
// disjoint, or a property every branch requires whose const/enum values are
// disjoint (a discriminator). Cost: O(branches^2 x values).
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "base/error.h"
#include "grammar/schema_compiler.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

namespace {

struct Summary {
  std::set<std::string> types;  // empty: any type
  bool has_values = false;
  std::vector<Json> values;                       // const / enum
  std::map<std::string, std::vector<Json>> tags;  // required property -> its const / enum values
};

std::vector<Json> values_of(const Json& s) {
  if (s.contains("const")) return {s["const"]};
  if (s.contains("enum") && s["enum"].is_array())
    return std::vector<Json>(s["enum"].begin(), s["enum"].end());
  return {};
}

std::string type_of(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  return v.is_array() ? "array" : "object";
}

bool types_overlap(const std::set<std::string>& a, const std::set<std::string>& b) {
  if (a.empty() || b.empty()) return true;
  for (const std::string& x : a)
    for (const std::string& y : b)
      if (x == y || (x == "integer" && y == "number") || (x == "number" && y == "integer"))
        return true;
  return false;
}

bool values_disjoint(const std::vector<Json>& a, const std::vector<Json>& b) {
  for (const Json& x : a)
    if (std::find(b.begin(), b.end(), x) != b.end()) return false;
  return true;
}

}  // namespace

bool SchemaCompiler::exclusive(const Json& branches, const std::string& ptr) {
  std::vector<Summary> sums;
  for (size_t i = 0; i < branches.size(); ++i) {
    Json b;
    try {
      b = flatten_ref(branches[i], ptr, 0);
    } catch (const Error&) {
      return false;
    }
    Summary s;
    if (b.contains("type")) {
      if (b["type"].is_string()) s.types.insert(b["type"].get<std::string>());
      if (b["type"].is_array())
        for (const auto& t : b["type"])
          if (t.is_string()) s.types.insert(t.get<std::string>());
    }
    if (b.contains("const") || b.contains("enum")) {
      s.has_values = true;
      s.values = values_of(b);
      if (s.types.empty())
        for (const Json& v : s.values) s.types.insert(type_of(v));
    }
    if (b.contains("required") && b["required"].is_array() && b.contains("properties") &&
        b["properties"].is_object())
      for (const auto& r : b["required"])
        if (r.is_string() && b["properties"].contains(r.get<std::string>())) {
          const Json& p = b["properties"][r.get<std::string>()];
          if (p.is_object() && (p.contains("const") || p.contains("enum")))
            s.tags[r.get<std::string>()] = values_of(p);
        }
    sums.push_back(std::move(s));
  }
  for (size_t i = 0; i < sums.size(); ++i)
    for (size_t j = i + 1; j < sums.size(); ++j) {
      const Summary &a = sums[i], &b = sums[j];
      bool apart = !types_overlap(a.types, b.types) ||
                   (a.has_values && b.has_values && values_disjoint(a.values, b.values));
      for (auto it = a.tags.begin(); !apart && it != a.tags.end(); ++it) {
        auto jt = b.tags.find(it->first);
        if (jt != b.tags.end() && values_disjoint(it->second, jt->second)) apart = true;
      }
      if (!apart) return false;
    }
  return true;
}

}  // namespace slm::grammar::detail

namespace slm::grammar::detail {

// A positive schema for "not s", for the shapes that have one: not of not,
// De Morgan over anyOf / allOf, a plain type, and required (an object that
// lacks one of the keys: that property forbidden). nullopt otherwise.
std::optional<Json> SchemaCompiler::negate(const Json& s, size_t depth) {
  if (depth > 8) return std::nullopt;
  if (s.is_boolean()) return Json(!s.get<bool>());
  if (!s.is_object()) return std::nullopt;
  std::vector<std::string> keys;
  for (auto it = s.begin(); it != s.end(); ++it)
    if (is_validation_keyword(it.key())) keys.push_back(it.key());
  if (keys.empty()) return Json(false);
  const bool objectish = std::all_of(keys.begin(), keys.end(), [&](const std::string& k) {
    return k == "properties" || k == "required" || (k == "type" && s["type"] == "object");
  });
  if (objectish && (s.contains("properties") || s.contains("required"))) {
    // not (object with these members) = not an object (when "type" says
    // object), or an object lacking a required key, or one with a listed
    // property whose value fails its schema.
    Json parts = Json::array();
    if (s.contains("type")) parts.push_back(Json{{"not", Json{{"type", "object"}}}});
    if (s.contains("required")) {
      if (!s["required"].is_array()) return std::nullopt;
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return std::nullopt;
        parts.push_back(
            Json{{"type", "object"}, {"properties", Json{{r.get<std::string>(), false}}}});
      }
    }
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) return std::nullopt;
      for (auto it = s["properties"].begin(); it != s["properties"].end(); ++it) {
        auto n = negate(it.value(), depth + 1);
        if (!n) return std::nullopt;
        if (*n == false) continue;  // the property accepts every value
        parts.push_back(Json{{"type", "object"},
                             {"required", Json::array({it.key()})},
                             {"properties", Json{{it.key(), *n}}}});
      }
    }
    if (parts.empty()) return Json(false);
    if (parts.size() == 1) return parts[0];
    return Json{{"anyOf", parts}};
  }
  if (keys.size() != 1) return std::nullopt;
  const std::string& k = keys[0];
  const Json& v = s[k];
  if (k == "not") return v;
  if (k == "type") return Json{{"not", Json{{"type", v}}}};
  if ((k == "anyOf" || k == "allOf") && v.is_array() && !v.empty()) {
    Json parts = Json::array();
    for (const auto& b : v) {
      auto n = negate(b, depth + 1);
      if (!n) return std::nullopt;
      parts.push_back(*n);
    }
    return Json{{k == "anyOf" ? "allOf" : "anyOf", parts}};
  }
  if (k == "$ref" && v.is_string()) {
    try {
      return negate(resolve(v.get<std::string>(), ""), depth + 1);
    } catch (const Error&) {
      return std::nullopt;
    }
  }
  if (k == "required" && v.is_array() && !v.empty()) {
    Json parts = Json::array();
    for (const auto& r : v) {
      if (!r.is_string()) return std::nullopt;
      parts.push_back(Json{{"properties", Json{{r.get<std::string>(), false}}}});
    }
    Json out{{"type", "object"}};
    if (parts.size() == 1)
      out["properties"] = parts[0]["properties"];
    else
      out["anyOf"] = parts;
    return out;
  }
  return std::nullopt;
}

}  // namespace slm::grammar::detail
