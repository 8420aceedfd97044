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
#include "grammar/schema_validate.h"

namespace slm::grammar {
namespace detail {

namespace {

const std::set<std::string> kUnsupported = {"propertyNames",
                                            "dependencies",
                                            "dependentRequired",
                                            "dependentSchemas",
                                            "unevaluatedProperties",
                                            "unevaluatedItems",
                                            "contains",
                                            "minContains",
                                            "maxContains",
                                            "if",
                                            "then",
                                            "else",
                                            "$dynamicRef",
                                            "$recursiveRef",
                                            "$dynamicAnchor",
                                            "$recursiveAnchor",
                                            "contentSchema"};
const std::vector<std::string> kAllTypes = {"null",  "boolean", "object",
                                            "array", "number",  "string"};

bool is_banned_number(const std::vector<std::string>& banned) {
  return std::find(banned.begin(), banned.end(), "number") != banned.end();
}

// Keywords that constrain instances (supported or not); anything else is an
// annotation (title, description, x-... extensions) and never changes the language.
const std::set<std::string> kValidation = {"type",
                                           "enum",
                                           "const",
                                           "properties",
                                           "required",
                                           "additionalProperties",
                                           "items",
                                           "prefixItems",
                                           "additionalItems",
                                           "minItems",
                                           "maxItems",
                                           "uniqueItems",
                                           "anyOf",
                                           "oneOf",
                                           "allOf",
                                           "$ref",
                                           "minLength",
                                           "maxLength",
                                           "pattern",
                                           "format",
                                           "minimum",
                                           "maximum",
                                           "exclusiveMinimum",
                                           "exclusiveMaximum",
                                           "multipleOf",
                                           "nullable",
                                           "minProperties",
                                           "patternProperties",
                                           "propertyNames",
                                           "maxProperties",
                                           "dependencies",
                                           "dependentRequired",
                                           "dependentSchemas",
                                           "unevaluatedProperties",
                                           "unevaluatedItems",
                                           "contains",
                                           "minContains",
                                           "maxContains",
                                           "not",
                                           "if",
                                           "then",
                                           "else",
                                           "$dynamicRef",
                                           "$recursiveRef",
                                           "contentSchema"};

std::string escape_pointer(const std::string& key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

}  // namespace

std::vector<std::string> type_names(const Json& t) {
  std::vector<std::string> out;
  if (t.is_string()) out.push_back(t.get<std::string>());
  if (t.is_array())
    for (const auto& x : t)
      if (x.is_string()) out.push_back(x.get<std::string>());
  return out;
}

bool is_validation_keyword(const std::string& key) {
  return kValidation.count(key) > 0;
}

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

[[noreturn]] void SchemaCompiler::never(const std::string& ptr, const std::string& why) const {
  throw Unsatisfiable("json schema: " + (ptr.empty() ? std::string("/") : ptr) + ": " + why);
}

std::vector<const Json*> SchemaCompiler::typed_values(
    const Json& s, const std::vector<const Json*>& values) const {
  if (!s.contains("type")) return values;
  std::vector<std::string> types;
  if (s["type"].is_string()) types.push_back(s["type"].get<std::string>());
  if (s["type"].is_array())
    for (const auto& t : s["type"])
      if (t.is_string()) types.push_back(t.get<std::string>());
  if (s.contains("nullable") && s["nullable"] == true) types.push_back("null");
  std::vector<const Json*> out;
  for (const Json* v : values) {
    for (const std::string& t : types) {
      const bool integral =
          v->is_number_integer() ||
          (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>());
      if ((t == "string" && v->is_string()) || (t == "number" && v->is_number()) ||
          (t == "integer" && integral) || (t == "boolean" && v->is_boolean()) ||
          (t == "null" && v->is_null()) || (t == "object" && v->is_object()) ||
          (t == "array" && v->is_array())) {
        out.push_back(v);
        break;
      }
    }
  }
  return out;
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
  if (root.is_object() && root.contains("$schema") && root["$schema"].is_string()) {
    const std::string v = root["$schema"].get<std::string>();
    legacy_ref_ = v.find("draft-0") != std::string::npos;  // draft-03 .. draft-07
  }
  const std::string top = visit(root, "");
  std::string out = std::string("root ::= ws ") + top + " ws\n" + kBaseRules;
  for (const auto& [name, body] : rules_)
    out += name + " ::= " + (body.empty() ? "\"\"" : body) + "\n";
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
  if (never_refs_.count(ref)) never(ptr, "reference '" + ref + "' matches nothing");
  const std::string name = reserve(ref.substr(1));
  ref_rules_[ref] = name;
  try {
    define(name, visit(target, ref.substr(1)));
  } catch (const Unsatisfiable&) {
    ref_rules_.erase(ref);
    never_refs_.insert(ref);
    throw;
  } catch (const Error&) {
    // A caller may recover (oneOf falls back to anyOf): the name must not
    // stay bound to a rule whose body was never written.
    ref_rules_.erase(ref);
    throw;
  }
  return name;
}

// The candidate values of a schema that admits only finitely many: its
// const (as a one-element array) or enum, or those of an allOf branch or
// $ref target. nullptr when none is found.
const Json* SchemaCompiler::finite_values(const Json& s, size_t depth) {
  if (depth > 16 || !s.is_object()) return nullptr;
  const bool ref_only =
      legacy_ref_ && s.contains("$ref");  // drafts 4-7: siblings of $ref are ignored
  if (!ref_only && s.contains("const")) {
    consts_.push_back(std::make_unique<Json>(Json::array({s["const"]})));
    return consts_.back().get();
  }
  if (!ref_only && s.contains("enum") && s["enum"].is_array() && !s["enum"].empty())
    return &s["enum"];
  if (!ref_only && s.contains("allOf") && s["allOf"].is_array())
    for (const auto& b : s["allOf"])
      if (const Json* v = finite_values(b, depth + 1)) return v;
  if (s.contains("$ref") && s["$ref"].is_string()) {
    const std::string ref = s["$ref"].get<std::string>();
    if (ref.size() >= 2 && ref[0] == '#' && ref[1] == '/') {
      try {
        const auto jp = Json::json_pointer(ref.substr(1));
        if (root_->contains(jp)) return finite_values((*root_)[jp], depth + 1);
      } catch (const Json::exception&) {
      }
    }
  }
  return nullptr;
}

// An object schema with up to 3 dependencies (dependencies, dependentRequired,
// dependentSchemas) as an anyOf over every choice of "key absent" (that
// property forbidden) or "key present" (required, with what it brings):
// 2^k branches that exclude each other. nullopt when the shape does not fit
// (the caller then reports the keyword).
std::optional<Json> SchemaCompiler::dependencies_as_any_of(const Json& s) {
  const char* kinds[] = {"dependencies", "dependentRequired", "dependentSchemas"};
  std::vector<std::pair<std::string, const Json*>> deps;
  for (const char* k : kinds) {
    if (!s.contains(k)) continue;
    if (!s[k].is_object()) return std::nullopt;
    for (auto it = s[k].begin(); it != s[k].end(); ++it) deps.push_back({it.key(), &it.value()});
  }
  if (deps.empty() || deps.size() > 3 || !s.contains("type") || s["type"] != "object" ||
      s.contains("anyOf") || s.contains("oneOf"))
    return std::nullopt;
  Json rest = s;
  for (const char* k : kinds) rest.erase(k);
  Json alts = Json::array();
  for (uint32_t pick = 0; pick < (1u << deps.size()); ++pick) {
    Json all = Json::array({rest});
    for (size_t i = 0; i < deps.size(); ++i) {
      const auto& [key, dep] = deps[i];
      if (!(pick & (1u << i))) {
        all.push_back(Json{{"properties", Json{{key, false}}}});
        continue;
      }
      all.push_back(Json{{"required", Json::array({key})}});
      if (dep->is_array()) {
        for (const auto& r : *dep)
          if (!r.is_string()) return std::nullopt;
        all.push_back(Json{{"required", *dep}});
      } else {
        all.push_back(*dep);
      }
    }
    alts.push_back(Json{{"allOf", all}});
  }
  return Json{{"anyOf", alts}};
}

// oneOf as anyOf over (branch i, not branch j for every j != i); nullopt when
// a negation is unknown or the result does not compile.
std::optional<std::string> SchemaCompiler::one_of_exact(const Json& s, const Json& branches,
                                                        const std::string& ptr) {
  std::vector<Json> negs;
  for (const auto& b : branches) {
    auto n = negate(b, 0);
    if (!n) return std::nullopt;
    negs.push_back(*n);
  }
  Json rest = s;
  rest.erase("oneOf");
  // A negation that is an anyOf is spread out (allOf cannot merge two anyOfs):
  // branch i with one alternative of each other branch's negation.
  auto choices = [](const Json& n) {
    if (n.is_object() && n.size() == 1 && n.contains("anyOf"))
      return std::vector<Json>(n["anyOf"].begin(), n["anyOf"].end());
    return std::vector<Json>{n};
  };
  Json alts = Json::array();
  for (size_t i = 0; i < branches.size(); ++i) {
    std::vector<Json> combos{Json::array({rest, branches[i]})};
    for (size_t j = 0; j < branches.size(); ++j) {
      if (j == i) continue;
      std::vector<Json> next;
      for (const Json& c : combos)
        for (const Json& x : choices(negs[j])) {
          Json all = c;
          all.push_back(x);
          next.push_back(std::move(all));
        }
      if (next.size() + alts.size() > 256) return std::nullopt;
      combos = std::move(next);
    }
    for (Json& c : combos) alts.push_back(Json{{"allOf", std::move(c)}});
  }
  try {
    return visit(Json{{"anyOf", alts}}, ptr);
  } catch (const Unsatisfiable&) {
    throw;
  } catch (const Error&) {
    return std::nullopt;  // e.g. a merge it cannot do: the caller's anyOf fallback
  }
}

bool SchemaCompiler::has_validation(const Json& s, const std::set<std::string>& except) {
  for (auto it = s.begin(); it != s.end(); ++it)
    if (kValidation.count(it.key()) && !except.count(it.key())) return true;
  return false;
}

std::string SchemaCompiler::visit(const Json& s, const std::string& ptr) {
  if (++depth_ > opt_.max_depth) fail(ptr, "schema nested too deeply");
  struct Leave {
    size_t& d;
    ~Leave() { --d; }
  } leave{depth_};
  if (s.is_boolean()) {
    if (!s.get<bool>()) never(ptr, "schema 'false' matches nothing");
    return "json-value";
  }
  if (!s.is_object()) fail(ptr, "a schema must be an object or a boolean");
  if (const Json* values = finite_values(s, 0)) {
    // A finite set of candidates: keep those the whole schema accepts, which
    // honours every keyword beside the enum, expressible in a grammar or not.
    ValueValidator check(*root_, legacy_ref_);
    std::vector<const Json*> kept;
    bool decided = true;
    for (const Json& v : *values) {
      const auto r = check.valid(s, v);
      if (!r) {
        decided = false;
        break;
      }
      if (*r) kept.push_back(&v);
    }
    if (decided) {
      if (kept.empty()) never(ptr, "no enum/const value satisfies the schema");
      std::string alts;
      for (size_t i = 0; i < kept.size(); ++i)
        alts += (i ? " | " : "") + const_value(*kept[i], ptr, 0);
      return rule(ptr, alts);
    }
  }
  if (auto alts = dependencies_as_any_of(s)) return visit(*alts, ptr);
  for (auto it = s.begin(); it != s.end(); ++it)
    if (kUnsupported.count(it.key())) fail(child(ptr, it.key()), "not supported");
  if (s.contains("not")) {
    const Json& n = s["not"];
    Json rest = s;
    rest.erase("not");
    if (n == false) return visit(rest, ptr);
    if (n == true || (n.is_object() && !has_validation(n, {})))
      never(child(ptr, "not"), "'not' of a schema that matches everything matches nothing");
    if (n.is_object() && (!n.contains("type") || has_validation(n, {"type"}))) {
      if (auto pos = negate(n, 0)) return visit(Json{{"allOf", {rest, *pos}}}, ptr);
    }
    if (!n.is_object() || has_validation(n, {"type"}) || !n.contains("type"))
      fail(child(ptr, "not"), "not supported (only 'not' of true, false, {} or a plain type)");
    // not {"type": T}: the allowed types lose T.
    const auto banned = type_names(n["type"]);
    auto is_banned = [&](const std::string& t) {
      return std::find(banned.begin(), banned.end(), t) != banned.end() ||
             (t == "integer" && is_banned_number(banned));
    };
    std::vector<std::string> allowed = rest.contains("type") ? type_names(rest["type"]) : kAllTypes;
    if (rest.contains("nullable") && rest["nullable"] == true) allowed.push_back("null");
    rest.erase("nullable");
    Json kept = Json::array();
    for (const std::string& t : allowed) {
      if (is_banned(t)) continue;
      if (t == "number" && std::find(banned.begin(), banned.end(), "integer") != banned.end())
        fail(child(ptr, "not"), "not supported ('not' integer of a number)");
      kept.push_back(t);
    }
    if (kept.empty()) never(child(ptr, "not"), "'not' excludes every allowed type");
    rest["type"] = kept;
    return visit(rest, ptr);
  }
  if (s.contains("$ref")) {
    if (!s["$ref"].is_string()) fail(child(ptr, "$ref"), "must be a string");
    // Drafts 4 to 7 ignore the siblings of $ref; 2019-09 and later apply them too.
    if (legacy_ref_ || !has_validation(s, {"$ref"}))
      return ref_rule(s["$ref"].get<std::string>(), child(ptr, "$ref"));
    Json rest = s;
    rest.erase("$ref");
    return visit(Json{{"allOf", {{{"$ref", s["$ref"]}}, rest}}}, ptr);
  }
  if (s.contains("allOf")) return visit(merge_all_of(s, ptr), ptr);
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!s.contains(key)) continue;
    const auto& branches = s[key];
    if (!branches.is_array() || branches.empty())
      fail(child(ptr, key), "must be a non-empty array");
    if (std::string(key) == "oneOf" && branches.size() > 1 &&
        !exclusive(branches, child(ptr, key))) {
      // Exactly one: branch i and the negation of every other, when those negations are known.
      if (auto exact = one_of_exact(s, branches, ptr)) return *exact;
      const std::string why =
          "oneOf branches may overlap; compiled as anyOf (an instance matching two "
          "branches is accepted)";
      if (opt_.strict_one_of) fail(child(ptr, key), why);
      if (warnings_) warnings_->push_back("json schema: " + child(ptr, key) + ": " + why);
    }
    Json rest = s;
    rest.erase(key);
    const bool plain = !has_validation(rest, {});
    std::string alts;
    std::string last_error;
    for (size_t i = 0; i < branches.size(); ++i) {
      const std::string p = child(ptr, key) + "/" + std::to_string(i);
      std::string e;
      try {
        if (plain) {
          e = visit(branches[i], p);
        } else {
          const Json both{{"allOf", {rest, branches[i]}}};
          e = visit(merge_all_of(both, p), p);
        }
      } catch (const Unsatisfiable& u) {  // this branch can never match: leave it out
        last_error = u.what();
        continue;
      }
      alts += (alts.empty() ? "" : " | ") + e;
    }
    if (alts.empty()) throw Unsatisfiable(last_error);
    return rule(ptr, alts);
  }
  if (s.contains("const") || s.contains("enum")) {
    const char* key = s.contains("const") ? "const" : "enum";
    std::vector<const Json*> values;
    if (s.contains("const")) {
      values.push_back(&s["const"]);
    } else {
      const auto& e = s["enum"];
      if (!e.is_array() || e.empty()) fail(child(ptr, "enum"), "must be a non-empty array");
      for (const auto& v : e) values.push_back(&v);
    }
    values = typed_values(s, values);
    if (values.empty()) never(child(ptr, key), "no value has the schema's type");
    std::string alts;
    for (size_t i = 0; i < values.size(); ++i)
      alts += (i ? " | " : "") + const_value(*values[i], child(ptr, key), 0);
    return rule(ptr, alts);
  }
  return typed(s, ptr);
}

std::string SchemaCompiler::typed(const Json& s, const std::string& ptr) {
  static const std::vector<std::string> kAll = {"null",  "boolean", "object",
                                                "array", "number",  "string"};
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
    if (t == "null")
      e = "\"null\"";
    else if (t == "boolean")
      e = "( \"true\" | \"false\" )";
    else if (t == "integer")
      e = integer(s, ptr);
    else if (t == "number")
      e = number(s, ptr);
    else if (t == "string")
      e = string(s, ptr);
    else if (t == "array")
      e = array(s, ptr);
    else if (t == "object")
      e = object(s, ptr);
    else
      fail(child(ptr, "type"), std::string("unknown type '") + t + "'");
    alts += (alts.empty() ? "" : " | ") + e;
  }
  return rule(ptr, alts);
}

// Inclusive integer bounds from minimum/maximum/exclusive* (draft 4 booleans too).
void SchemaCompiler::int_bounds(const Json& s, const std::string& ptr, std::optional<int64_t>& lo,
                                std::optional<int64_t>& hi) {
  auto num = [&](const char* key) -> std::optional<double> {
    if (!s.contains(key) || s[key].is_boolean()) return std::nullopt;
    if (!s[key].is_number()) fail(child(ptr, key), "must be a number");
    const double v = s[key].get<double>();
    if (!(std::fabs(v) <= 1e18)) fail(child(ptr, key), "bounds beyond 10^18 are not supported");
    return v;
  };
  auto flag = [&](const char* key) { return s.contains(key) && s[key] == true; };
  if (auto v = num("minimum"))
    lo = static_cast<int64_t>(std::ceil(*v)) +
         (flag("exclusiveMinimum") && std::ceil(*v) == *v ? 1 : 0);
  if (auto v = num("maximum"))
    hi = static_cast<int64_t>(std::floor(*v)) -
         (flag("exclusiveMaximum") && std::floor(*v) == *v ? 1 : 0);
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
  std::optional<int64_t> lo, hi;
  int_bounds(s, ptr, lo, hi);
  if (s.contains("multipleOf") && s["multipleOf"] != 1) {
    const Json& k = s["multipleOf"];
    const std::string mptr = child(ptr, "multipleOf");
    if (!k.is_number() || !(k.get<double>() > 0)) fail(mptr, "must be a positive number");
    if (!k.is_number_integer() &&
        !(k.is_number_float() && std::floor(k.get<double>()) == k.get<double>()))
      fail(mptr, "not supported (a fraction for an integer)");
    if (k.get<double>() > 1e9) fail(mptr, "not supported (above 10^9)");
    const auto step = static_cast<int64_t>(k.get<double>());
    if (lo && hi) {  // few multiples between the bounds: list them
      if (*lo > *hi) never(ptr, "no integer lies between the bounds");
      const int64_t first = *lo >= 0 ? (*lo + step - 1) / step * step : -((-*lo) / step * step);
      if (first > *hi) never(mptr, "no multiple lies between the bounds");
      if ((*hi - first) / step >= 4096)
        fail(mptr, "not supported (over 4096 multiples between the bounds)");
      std::string alts;
      for (int64_t v = first; v <= *hi; v += step)
        alts += (alts.empty() ? "\"" : " | \"") + std::to_string(v) + "\"";
      return "( " + alts + " )";
    }
    if (lo || hi || step > 1000)
      fail(mptr, "not supported (with one bound, or above 1000 without bounds)");
    // Decimal digits read left to right keep the remainder mod step: one rule per remainder.
    std::vector<std::string> names(static_cast<size_t>(step));
    for (auto& n : names) n = reserve(mptr);
    for (int64_t r = 0; r < step; ++r) {
      std::string body = r == 0 ? "\"\"" : "";
      for (int d = 0; d <= 9; ++d)
        body += std::string(body.empty() ? "" : " | ") + "\"" + std::to_string(d) + "\" " +
                names[static_cast<size_t>((r * 10 + d) % step)];
      define(names[static_cast<size_t>(r)], body);
    }
    std::string first;
    for (int d = 1; d <= 9; ++d)
      first += std::string(first.empty() ? "" : " | ") + "\"" + std::to_string(d) + "\" " +
               names[static_cast<size_t>(d % step)];
    return "( \"0\" | \"-\"? ( " + first + " ) )";
  }
  if (!lo && !hi) return "json-integer";
  if (lo && hi && *lo > *hi) never(ptr, "no integer lies between the bounds");
  try {
    return int_range_gbnf(lo, hi);
  } catch (const Error& e) {
    fail(ptr, e.what());
  }
}

namespace {

struct Bound {
  int64_t v;
  bool exclusive;
};

// Non-negative decimals I.F (no exponent) whose value m satisfies lo < or <= m
// and, with hi, m < or <= hi; integer endpoints. "" when none.
std::string magnitude_range(Bound lo, const Bound* hi) {
  const std::string f_any = "( \".\" [0-9]+ )?", f_zero = "( \".\" \"0\"+ )?",
                    f_nonzero = "\".\" [0-9]* [1-9] [0-9]*";
  std::vector<std::string> alts;
  const int64_t a = lo.exclusive ? lo.v + 1 : lo.v;
  if (!hi || a <= hi->v - 1)
    alts.push_back(int_range_gbnf(a, hi ? std::optional<int64_t>(hi->v - 1) : std::nullopt) + " " +
                   f_any);
  if (lo.exclusive && (!hi || lo.v < hi->v))
    alts.push_back("\"" + std::to_string(lo.v) + "\" " + f_nonzero);
  if (hi && !hi->exclusive && (hi->v > lo.v || (hi->v == lo.v && !lo.exclusive)))
    alts.push_back("\"" + std::to_string(hi->v) + "\" " + f_zero);
  std::string out;
  for (const std::string& x : alts) out += (out.empty() ? "" : " | ") + x;
  return out;
}

}  // namespace

std::string SchemaCompiler::number(const Json& s, const std::string& ptr) {
  if (s.contains("multipleOf")) {
    // Steps 10^-d (1, 0.1, 0.01, ...) without bounds: at most d significant
    // fraction digits, written without an exponent.
    const Json& k = s["multipleOf"];
    const std::string mptr = child(ptr, "multipleOf");
    if (!k.is_number() || !(k.get<double>() > 0)) fail(mptr, "must be a positive number");
    const double d = std::round(-std::log10(k.get<double>()));
    if (d < 0 || d > 12 || std::fabs(std::pow(10.0, -d) - k.get<double>()) > 1e-9 * k.get<double>())
      fail(mptr, "not supported (only 1, 0.1, 0.01, ... for numbers)");
    const bool nonneg = s.contains("minimum") && s["minimum"] == 0;
    for (const char* b : {"maximum", "exclusiveMinimum", "exclusiveMaximum"})
      if (s.contains(b)) fail(mptr, "not supported together with bounds other than minimum 0");
    if (s.contains("minimum") && !nonneg)
      fail(mptr, "not supported together with bounds other than minimum 0");
    const std::string frac =
        d == 0 ? "( \".\" \"0\"+ )?"
               : "( \".\" [0-9]{1," + std::to_string(static_cast<int>(d)) + "} \"0\"* )?";
    return std::string("( ") + (nonneg ? "" : "\"-\"? ") + "( \"0\" | [1-9] [0-9]* ) " + frac +
           " )";
  }
  // Bounds: draft 6+ numeric exclusive* or draft 4 boolean flags on minimum/maximum.
  std::optional<Bound> lo, hi;
  auto read = [&](const char* key, const char* flag, bool lower) {
    if (!s.contains(key) || s[key].is_boolean()) return;
    if (!s[key].is_number()) fail(child(ptr, key), "must be a number");
    const double v = s[key].get<double>();
    if (!(std::fabs(v) <= 1e18) || std::floor(v) != v)
      fail(child(ptr, key), "bounds on 'number' must be integers within 10^18");
    Bound b{static_cast<int64_t>(v), flag == nullptr || (s.contains(flag) && s[flag] == true)};
    std::optional<Bound>& slot = lower ? lo : hi;
    const bool tighter = !slot || (lower ? (b.v > slot->v || (b.v == slot->v && b.exclusive))
                                         : (b.v < slot->v || (b.v == slot->v && b.exclusive)));
    if (tighter) slot = b;
  };
  read("minimum", "exclusiveMinimum", true);
  read("maximum", "exclusiveMaximum", false);
  read("exclusiveMinimum", nullptr, true);
  read("exclusiveMaximum", nullptr, false);
  if (!lo && !hi) return "json-number";
  if (lo && !hi && lo->v == 0 && !lo->exclusive)  // x >= 0: every unsigned spelling, exponents too
    return "( ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )? )";
  // x >= 0 part: magnitude in [max(lo, 0), hi]; x < 0 part: magnitude in (max(0, -hi), -lo].
  std::vector<std::string> alts;
  if (!hi || hi->v > 0 || (hi->v == 0 && !hi->exclusive)) {
    const Bound m_lo = lo && lo->v >= 0 ? *lo : Bound{0, false};
    const std::string e = magnitude_range(m_lo, hi ? &*hi : nullptr);
    if (!e.empty()) alts.push_back("( " + e + " )");
  }
  if (!lo || lo->v < 0) {
    const Bound m_lo = hi && hi->v < 0 ? Bound{-hi->v, hi->exclusive} : Bound{0, true};
    const Bound m_hi{lo ? -lo->v : 0, lo ? lo->exclusive : false};
    const std::string e = magnitude_range(m_lo, lo ? &m_hi : nullptr);
    if (!e.empty()) alts.push_back("\"-\" ( " + e + " )");
  }
  if (alts.empty()) never(ptr, "no number lies between the bounds");
  std::string out;
  for (const std::string& x : alts) out += (out.empty() ? "" : " | ") + x;
  return "( " + out + " )";
}

}  // namespace detail

std::string json_schema_to_gbnf(std::string_view schema_json, const SchemaOptions& options,
                                std::vector<std::string>* warnings) {
  using detail::Json;
  if (schema_json.size() > options.max_schema_bytes)
    throw Error("json schema: larger than the limit");
  Json schema;
  try {
    // The callback rejects deep nesting before the parser recurses into it.
    size_t depth = 0;
    schema = Json::parse(schema_json, [&](int d, Json::parse_event_t, Json&) {
      depth = static_cast<size_t>(d);
      if (depth > 256) throw Error("json schema: nested deeper than 256");
      return true;
    });
  } catch (const Json::exception& e) {
    throw Error(std::string("json schema: invalid JSON: ") + e.what());
  }
  return detail::SchemaCompiler(options, warnings).run(schema);
}

Grammar compile_json_schema(std::string_view schema_json, const SchemaOptions& options,
                            std::vector<std::string>* warnings) {
  const std::string gbnf = json_schema_to_gbnf(schema_json, options, warnings);
  try {
    return parse_gbnf(gbnf);
  } catch (const Error& e) {
    throw Error(std::string("json schema: the generated grammar is invalid: ") + e.what());
  }
}

}  // namespace slm::grammar
