// allOf for the JSON Schema compiler: every branch ($refs followed, nested
// allOf flattened) is merged into one schema. Properties merge per name (as a
// nested allOf), required lists unite, types intersect, numeric and length
// bounds tighten; any other keyword must agree in every branch, else the
// merge is an error naming the allOf. Cost: O(total size of the branches).
#include <algorithm>
#include <set>

#include "base/error.h"
#include "grammar/schema_compiler.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

namespace {

const std::set<std::string> kLower = {"minimum", "exclusiveMinimum", "minLength", "minItems",
                                      "minProperties"};
const std::set<std::string> kUpper = {"maximum", "exclusiveMaximum", "maxLength", "maxItems",
                                      "maxProperties"};

}  // namespace

// A schema with a top-level $ref (and/or allOf) turned into one plain schema.
Json SchemaCompiler::flatten_ref(const Json& s, const std::string& ptr, size_t depth) {
  if (depth > 32) fail(ptr, "allOf/$ref chain is too deep (or cyclic)");
  if (s.is_boolean()) {
    if (!s.get<bool>()) never(ptr, "schema 'false' matches nothing");
    return Json::object();
  }
  if (!s.is_object()) fail(ptr, "a schema must be an object or a boolean");
  Json out = Json::object();
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) fail(child(ptr, "$ref"), "must be a string");
    if (legacy_ref_)
      return flatten_ref(resolve(s["$ref"].get<std::string>(), child(ptr, "$ref")), ptr, depth + 1);
    merge_into(
        out, flatten_ref(resolve(s["$ref"].get<std::string>(), child(ptr, "$ref")), ptr, depth + 1),
        ptr);
  }
  if (s.contains("allOf")) {
    const auto& all = s["allOf"];
    if (!all.is_array() || all.empty()) fail(child(ptr, "allOf"), "must be a non-empty array");
    for (size_t i = 0; i < all.size(); ++i)
      merge_into(out, flatten_ref(all[i], child(ptr, "allOf") + "/" + std::to_string(i), depth + 1),
                 ptr);
  }
  Json rest = s;
  rest.erase("$ref");
  rest.erase("allOf");
  merge_into(out, rest, ptr);
  return out;
}

Json SchemaCompiler::merge_all_of(const Json& s, const std::string& ptr) {
  return flatten_ref(s, ptr, 0);
}

void SchemaCompiler::merge_into(Json& into, const Json& s, const std::string& ptr) {
  // additionalProperties of one side governs the properties only the other
  // side lists: such a property must satisfy it too (with false: it is
  // forbidden). Not done beside patternProperties (a key may match one).
  auto restricting = [](const Json& x) {
    return x.is_object() && x.contains("additionalProperties") &&
           x["additionalProperties"] != true && !x.contains("patternProperties");
  };
  if (into.is_object() && s.is_object() && (restricting(into) || restricting(s))) {
    const Json none = Json::object();
    const Json& into_props =
        into.contains("properties") && into["properties"].is_object() ? into["properties"] : none;
    const Json& s_props =
        s.contains("properties") && s["properties"].is_object() ? s["properties"] : none;
    Json extra_into = Json::object(), extra_s = Json::object();  // constraints to add per side
    if (restricting(into))
      for (auto p = s_props.begin(); p != s_props.end(); ++p)
        if (!into_props.contains(p.key())) extra_into[p.key()] = into["additionalProperties"];
    if (restricting(s))
      for (auto p = into_props.begin(); p != into_props.end(); ++p)
        if (!s_props.contains(p.key())) extra_s[p.key()] = s["additionalProperties"];
    if (!extra_into.empty() || !extra_s.empty()) {
      Json adjusted = s;
      for (auto p = extra_into.begin(); p != extra_into.end(); ++p)
        adjusted["properties"][p.key()] = Json{{"allOf", {s_props[p.key()], p.value()}}};
      for (auto p = extra_s.begin(); p != extra_s.end(); ++p)
        into["properties"][p.key()] = Json{{"allOf", {into["properties"][p.key()], p.value()}}};
      merge_plain(into, adjusted, ptr);
      return;
    }
  }
  merge_plain(into, s, ptr);
}

void SchemaCompiler::merge_plain(Json& into, const Json& s, const std::string& ptr) {
  for (auto it = s.begin(); it != s.end(); ++it) {
    const std::string& k = it.key();
    const Json& v = it.value();
    if (!is_validation_keyword(k)) continue;  // annotations never conflict
    if (!into.contains(k)) {
      into[k] = v;
      continue;
    }
    Json& old = into[k];
    if (old == v) continue;
    if (k == "properties" && old.is_object() && v.is_object()) {
      for (auto p = v.begin(); p != v.end(); ++p) {
        if (old.contains(p.key()) && old[p.key()] != p.value())
          old[p.key()] = Json{{"allOf", {old[p.key()], p.value()}}};
        else
          old[p.key()] = p.value();
      }
    } else if (k == "required" && old.is_array() && v.is_array()) {
      for (const auto& r : v)
        if (std::find(old.begin(), old.end(), r) == old.end()) old.push_back(r);
    } else if (k == "type") {
      const auto a = type_names(old), b = type_names(v);
      Json both = Json::array();
      for (const std::string& x : a)
        for (const std::string& y : b) {
          if (x == y)
            both.push_back(x);
          else if ((x == "integer" && y == "number") || (x == "number" && y == "integer"))
            both.push_back("integer");
        }
      if (both.empty()) never(child(ptr, "allOf"), "the branches' types do not intersect");
      old = both;
    } else if ((kLower.count(k) || kUpper.count(k)) && old.is_number() && v.is_number()) {
      const bool lower = kLower.count(k) > 0;
      if (lower ? v.get<double>() > old.get<double>() : v.get<double>() < old.get<double>())
        old = v;
    } else if ((k == "items" || k == "additionalProperties") && old.is_object() && v.is_object()) {
      old = Json{{"allOf", {old, v}}};
    } else {
      fail(child(ptr, "allOf"), std::string("cannot merge differing '") + k + "' keywords");
    }
  }
}

}  // namespace slm::grammar::detail
