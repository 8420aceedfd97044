// JSON Schema compiler (json_schema.h): one GBNF rule per visited subschema,
// named after its JSON pointer; $ref targets get their rule name before their
// body is compiled, which is what makes recursive schemas work. allOf is
// merged into one schema first; objects and arrays are in schema_containers.cpp.
#include "grammar/json_schema.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "base/error.h"
#include "grammar/schema_compiler.h"
#include "grammar/schema_internal.h"

namespace slm::grammar {
namespace detail {

namespace {

const std::set<std::string> kAnnotations = {
    "$schema", "$id", "id", "title", "description", "default", "examples", "example", "$comment",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "contentEncoding",
    "contentMediaType", "$anchor", "discriminator", "externalDocs", "xml"};
const std::set<std::string> kUnsupported = {
    "patternProperties", "propertyNames", "maxProperties", "dependencies", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains",
    "maxContains", "not", "if", "then", "else", "$dynamicRef", "$recursiveRef", "$dynamicAnchor",
    "$recursiveAnchor", "contentSchema"};

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

}  // namespace

const char* kBaseRules = R"(ws ::= [ \t\n\r]*
json-char ::= [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
json-string ::= "\"" json-char* "\""
json-number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
json-integer ::= "-"? ( "0" | [1-9] [0-9]* )
json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
json-object ::= "{" ws ( json-string ws ":" ws json-value ( ws "," ws json-string ws ":" ws json-value )* ws )? "}"
json-array ::= "[" ws ( json-value ( ws "," ws json-value )* ws )? "]"
)";

[[noreturn]] void SchemaCompiler::fail(const std::string& ptr, const std::string& why) const {
  throw Error(std::string("json schema: ") + (ptr.empty() ? std::string("/") : ptr) + ": " + why);
}

std::string SchemaCompiler::child(const std::string& ptr, const std::string& key) {
  return ptr + "/" + escape_pointer(key);
}

std::string SchemaCompiler::reserve(const std::string& ptr) {
  std::string base = "s";
  for (char c : ptr) {
    if (base.size() >= 40) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    base += ok ? c : '-';
  }
  if (rules_.size() >= opt_.max_rules) fail(ptr, "schema needs too many grammar rules");
  std::string name = base + "-" + std::to_string(rules_.size());
  rule_index_[name] = rules_.size();
  rules_.push_back({name, ""});
  return name;
}

void SchemaCompiler::define(const std::string& name, const std::string& body) {
  rules_[rule_index_.at(name)].second = body;
}

std::string SchemaCompiler::rule(const std::string& ptr, const std::string& body) {
  const std::string name = reserve(ptr);
  define(name, body);
  return name;
}

std::string SchemaCompiler::run(const Json& root) {
  root_ = &root;
  const std::string top = visit(root, "");
  std::string out = std::string("root ::= ws ") + top + " ws\n" + kBaseRules;
  for (const auto& [name, body] : rules_) out += name + " ::= " + (body.empty() ? "\"\"" : body) + "\n";
  return out;
}

// A GBNF expression for exactly this JSON value, whitespace allowed between tokens.
std::string SchemaCompiler::const_value(const Json& v, const std::string& ptr, size_t depth) {
  if (depth > opt_.max_depth) fail(ptr, "constant nested too deeply");
  if (v.is_object()) {
    if (v.empty()) return "\"{\" ws \"}\"";
    std::string s = "\"{\" ws";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) s += " ws \",\" ws";
      first = false;
      s += std::string(" ") + gbnf_literal(Json(it.key()).dump()) + " ws \":\" ws " +
           const_value(it.value(), ptr, depth + 1);
    }
    return std::string("( ") + s + " ws \"}\" )";
  }
  if (v.is_array()) {
    if (v.empty()) return "\"[\" ws \"]\"";
    std::string s = "\"[\" ws";
    for (size_t i = 0; i < v.size(); ++i)
      s += (i ? " ws \",\" ws " : " ") + const_value(v[i], ptr, depth + 1);
    return std::string("( ") + s + " ws \"]\" )";
  }
  return gbnf_literal(v.dump(-1, ' ', false, Json::error_handler_t::replace));
}

const Json& SchemaCompiler::resolve(const std::string& ref, const std::string& ptr) {
  if (ref.empty() || ref[0] != '#') fail(ptr, "only local references (\"#...\") are supported");
  const std::string path = ref.substr(1);
  if (path.empty()) return *root_;
  if (path[0] != '/') fail(ptr, "anchor references are not supported");
  try {
    const auto jp = Json::json_pointer(path);
    if (!root_->contains(jp)) fail(ptr, std::string("reference '") + ref + "' does not resolve");
    return (*root_)[jp];
  } catch (const Json::exception&) {
    fail(ptr, std::string("reference '") + ref + "' is not a valid JSON pointer");
  }
}

std::string SchemaCompiler::ref_rule(const std::string& ref, const std::string& ptr) {
  auto it = ref_rules_.find(ref);
  if (it != ref_rules_.end()) return it->second;
  const Json& target = resolve(ref, ptr);
  const std::string name = reserve(ref.substr(1));
  ref_rules_[ref] = name;
  define(name, visit(target, ref.substr(1)));
  return name;
}

bool SchemaCompiler::has_validation(const Json& s, const std::set<std::string>& except) {
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!kAnnotations.count(it.key()) && !except.count(it.key())) return true;
  return false;
}

std::string SchemaCompiler::visit(const Json& s, const std::string& ptr) {
  if (++depth_ > opt_.max_depth) fail(ptr, "schema nested too deeply");
  struct Leave {
    size_t& d;
    ~Leave() { --d; }
  } leave{depth_};
  if (s.is_boolean()) {
    if (!s.get<bool>()) fail(ptr, "schema 'false' matches nothing");
    return "json-value";
  }
  if (!s.is_object()) fail(ptr, "a schema must be an object or a boolean");
  for (auto it = s.begin(); it != s.end(); ++it)
    if (kUnsupported.count(it.key())) fail(child(ptr, it.key()), "not supported");
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) fail(child(ptr, "$ref"), "must be a string");
    if (!has_validation(s, {"$ref"})) return ref_rule(s["$ref"].get<std::string>(), child(ptr, "$ref"));
    Json rest = s;
    rest.erase("$ref");
    return visit(Json{{"allOf", {{{"$ref", s["$ref"]}}, rest}}}, ptr);
  }
  if (s.contains("allOf")) return visit(merge_all_of(s, ptr), ptr);
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    const auto& branches = s[key];
    if (!branches.is_array() || branches.empty()) fail(child(ptr, key), "must be a non-empty array");
    Json rest = s;
    rest.erase(key);
    const bool plain = !has_validation(rest, {});
    std::string alts;
    for (size_t i = 0; i < branches.size(); ++i) {
      const std::string p = child(ptr, key) + "/" + std::to_string(i);
      std::string e;
      if (plain) {
        e = visit(branches[i], p);
      } else {
        const Json both{{"allOf", {rest, branches[i]}}};
        e = visit(merge_all_of(both, p), p);
      }
      alts += (i ? " | " : "") + e;
    }
    return rule(ptr, alts);
  }
  if (s.contains("const")) return rule(ptr, const_value(s["const"], child(ptr, "const"), 0));
  if (s.contains("enum")) {
    const auto& e = s["enum"];
    if (!e.is_array() || e.empty()) fail(child(ptr, "enum"), "must be a non-empty array");
    std::string alts;
    for (size_t i = 0; i < e.size(); ++i)
      alts += (i ? " | " : "") + const_value(e[i], child(ptr, "enum"), 0);
    return rule(ptr, alts);
  }
  return typed(s, ptr);
}

std::string SchemaCompiler::typed(const Json& s, const std::string& ptr) {
  static const std::vector<std::string> kAll = {"null", "boolean", "object", "array",
                                                "number", "string"};
  std::vector<std::string> types;
  if (s.contains("type")) {
    const auto& t = s["type"];
    if (t.is_string()) {
      types.push_back(t.get<std::string>());
    } else if (t.is_array() && !t.empty()) {
      for (const auto& x : t) {
        if (!x.is_string()) fail(child(ptr, "type"), "must name types");
        types.push_back(x.get<std::string>());
      }
    } else {
      fail(child(ptr, "type"), "must be a string or a non-empty array");
    }
  } else {
    if (!has_validation(s, {"nullable"})) return "json-value";
    types = kAll;
  }
  if (s.contains("nullable") && s["nullable"] == true) types.push_back("null");
  // "number" already covers "integer".
  const bool has_number = std::find(types.begin(), types.end(), "number") != types.end();
  std::set<std::string> done;
  std::string alts;
  for (const std::string& t : types) {
    if (!done.insert(t).second || (t == "integer" && has_number)) continue;
    std::string e;
    if (t == "null") e = "\"null\"";
    else if (t == "boolean") e = "( \"true\" | \"false\" )";
    else if (t == "integer") e = integer(s, ptr);
    else if (t == "number") e = number(s, ptr);
    else if (t == "string") e = string(s, ptr);
    else if (t == "array") e = array(s, ptr);
    else if (t == "object") e = object(s, ptr);
    else fail(child(ptr, "type"), std::string("unknown type '") + t + "'");
    alts += (alts.empty() ? "" : " | ") + e;
  }
  return rule(ptr, alts);
}

// Inclusive integer bounds from minimum/maximum/exclusive* (draft 4 booleans too).
void SchemaCompiler::int_bounds(const Json& s, const std::string& ptr,
                                std::optional<int64_t>& lo, std::optional<int64_t>& hi) {
  auto num = [&](const char* key) -> std::optional<double> {
    if (!s.contains(key) || s[key].is_boolean()) return std::nullopt;
    if (!s[key].is_number()) fail(child(ptr, key), "must be a number");
    const double v = s[key].get<double>();
    if (!(std::fabs(v) <= 1e18)) fail(child(ptr, key), "bounds beyond 10^18 are not supported");
    return v;
  };
  auto flag = [&](const char* key) { return s.contains(key) && s[key] == true; };
  if (auto v = num("minimum")) lo = static_cast<int64_t>(std::ceil(*v)) + (flag("exclusiveMinimum") && std::ceil(*v) == *v ? 1 : 0);
  if (auto v = num("maximum")) hi = static_cast<int64_t>(std::floor(*v)) - (flag("exclusiveMaximum") && std::floor(*v) == *v ? 1 : 0);
  if (auto v = num("exclusiveMinimum")) {
    const int64_t b = static_cast<int64_t>(std::floor(*v)) + 1;
    lo = lo ? std::max(*lo, b) : b;
  }
  if (auto v = num("exclusiveMaximum")) {
    const int64_t b = static_cast<int64_t>(std::ceil(*v)) - 1;
    hi = hi ? std::min(*hi, b) : b;
  }
}

std::string SchemaCompiler::integer(const Json& s, const std::string& ptr) {
  if (s.contains("multipleOf") && s["multipleOf"] != 1) fail(child(ptr, "multipleOf"), "not supported");
  std::optional<int64_t> lo, hi;
  int_bounds(s, ptr, lo, hi);
  if (!lo && !hi) return "json-integer";
  try {
    return int_range_gbnf(lo, hi);
  } catch (const Error& e) {
    fail(ptr, e.what());
  }
}

std::string SchemaCompiler::number(const Json& s, const std::string& ptr) {
  if (s.contains("multipleOf")) fail(child(ptr, "multipleOf"), "not supported");
  for (const char* key : {"maximum", "exclusiveMaximum"})
    if (s.contains(key) && !s[key].is_boolean())
      fail(child(ptr, key), "upper bounds on 'number' are not supported");
  const bool excl = s.contains("exclusiveMinimum");
  if (!s.contains("minimum") && !excl) return "json-number";
  const auto& m = excl && !s["exclusiveMinimum"].is_boolean() ? s["exclusiveMinimum"] : s["minimum"];
  const char* key = excl && !s["exclusiveMinimum"].is_boolean() ? "exclusiveMinimum" : "minimum";
  if (!m.is_number() || m.get<double>() < 0 || m.get<double>() > 1e18 ||
      std::floor(m.get<double>()) != m.get<double>())
    fail(child(ptr, key), "only an integer lower bound >= 0 is supported on 'number'");
  const auto lo = static_cast<int64_t>(m.get<double>());
  const bool strict = excl;
  const std::string frac = "( \".\" [0-9]+ )?";
  if (lo == 0 && !strict) return std::string("( \"0\" | [1-9] [0-9]* ) ") + frac + " ( [eE] [-+]? [0-9]+ )?";
  // x > lo: integer part > lo, or == lo with a non-zero fraction; x >= lo: integer part >= lo.
  std::string e = std::string("( ") + int_range_gbnf(strict ? lo + 1 : lo, std::nullopt) + " " + frac;
  if (strict) e += std::string(" | \"") + std::to_string(lo) + ".\" [0-9]* [1-9] [0-9]*";
  return e + " )";
}

}  // namespace detail

std::string json_schema_to_gbnf(std::string_view schema_json, const SchemaOptions& options) {
  using detail::Json;
  if (schema_json.size() > options.max_schema_bytes) throw Error("json schema: larger than the limit");
  Json schema;
  try {
    // The callback rejects deep nesting before the parser recurses into it.
    size_t depth = 0;
    schema = Json::parse(
        schema_json,
        [&](int d, Json::parse_event_t, Json&) {
          depth = static_cast<size_t>(d);
          if (depth > 256) throw Error("json schema: nested deeper than 256");
          return true;
        });
  } catch (const Json::exception& e) {
    throw Error(std::string("json schema: invalid JSON: ") + e.what());
  }
  return detail::SchemaCompiler(options).run(schema);
}

Grammar compile_json_schema(std::string_view schema_json, const SchemaOptions& options) {
  const std::string gbnf = json_schema_to_gbnf(schema_json, options);
  try {
    return parse_gbnf(gbnf);
  } catch (const Error& e) {
    throw Error(std::string("json schema: the generated grammar is invalid: ") + e.what());
  }
}

}  // namespace slm::grammar
