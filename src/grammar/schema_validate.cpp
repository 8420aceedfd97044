// Concrete-value validation (schema_validate.h): a direct reading of the
// validation keywords of drafts 4 to 2020-12 for one value.
#include "grammar/schema_validate.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "base/error.h"
#include "grammar/matcher.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

namespace {

using Json = nlohmann::ordered_json;

constexpr size_t kMaxDepth = 64;

const std::set<std::string> kUndecidable = {"unevaluatedProperties", "unevaluatedItems",
                                            "$dynamicRef", "$recursiveRef", "contentSchema"};

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool is_integral(const Json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::floor(d) == d;
}

bool has_type(const Json& v, const std::string& t) {
  if (t == "null") return v.is_null();
  if (t == "boolean") return v.is_boolean();
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "number") return v.is_number();
  if (t == "integer") return is_integral(v);
  return false;
}

// multipleOf as a mathematical statement: exact for integers; for decimals
// the quotient must be within rounding error of an integer (0.07 / 0.01 is
// 7.000000000000001 in doubles yet 0.07 is a multiple of 0.01).
bool multiple_of(const Json& v, const Json& k) {
  if (v.is_number_integer() && k.is_number_integer()) {
    const auto a = v.get<int64_t>(), b = k.get<int64_t>();
    return b != 0 && a % b == 0;
  }
  const double q = v.get<double>() / k.get<double>();
  if (!std::isfinite(q)) return false;
  return std::fabs(q - std::round(q)) <= 1e-9 * std::max(1.0, std::fabs(q));
}

}  // namespace

bool json_equal(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_float() || b.is_number_float()) return a.get<double>() == b.get<double>();
    if (a.is_number_unsigned() || b.is_number_unsigned()) {
      if (a.is_number_unsigned() && b.is_number_unsigned())
        return a.get<uint64_t>() == b.get<uint64_t>();
      const Json& s = a.is_number_unsigned() ? b : a;
      const Json& u = a.is_number_unsigned() ? a : b;
      return s.get<int64_t>() >= 0 && static_cast<uint64_t>(s.get<int64_t>()) == u.get<uint64_t>();
    }
    return a.get<int64_t>() == b.get<int64_t>();
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!json_equal(a[i], b[i])) return false;
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto j = b.find(it.key());
      if (j == b.end() || !json_equal(it.value(), *j)) return false;
    }
    return true;
  }
  return a == b;
}

std::optional<bool> ValueValidator::valid(const Json& schema, const Json& value) {
  try {
    return check(schema, value, 0);
  } catch (const std::exception&) {  // malformed keyword values: leave the decision to the compiler
    return std::nullopt;
  }
}

std::optional<bool> ValueValidator::string_matches(const std::string& content,
                                                   const std::string& value) {
  auto it = grammars_.find(content);
  if (it == grammars_.end()) {
    auto g = std::make_shared<const Grammar>(
        parse_gbnf(std::string("root ::= ") + content + "\n" + kBaseRules));
    it = grammars_.emplace(content, std::move(g)).first;
  }
  // The string's content as the compiler's grammars spell it (JSON escapes, no quotes).
  const std::string enc = Json(value).dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::string body = enc.substr(1, enc.size() - 2);
  Matcher m(it->second);
  return m.accept(body) == body.size() && m.is_complete();
}

std::optional<bool> ValueValidator::check(const Json& s, const Json& v, size_t depth) {
  if (depth > kMaxDepth) return std::nullopt;
  if (s.is_boolean()) return s.get<bool>();
  if (!s.is_object()) return std::nullopt;
  for (const std::string& k : kUndecidable)
    if (s.contains(k)) return std::nullopt;
  bool undecided = false;
  // Folds one sub-result in: false decides, nullopt taints.
  auto sub = [&](const Json& schema, const Json& value) -> bool {
    const auto r = check(schema, value, depth + 1);
    if (!r) undecided = true;
    return r.value_or(true);
  };
#define SLM_FAIL_IF(cond)   \
  do {                      \
    if (cond) return false; \
  } while (0)
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"].get<std::string>();
    if (ref.empty() || ref[0] != '#') return std::nullopt;
    const std::string path = ref.substr(1);
    const Json* target = &root_;
    if (!path.empty()) {
      if (path[0] != '/') return std::nullopt;
      const auto jp = Json::json_pointer(path);
      if (!root_.contains(jp)) return std::nullopt;
      target = &root_[jp];
    }
    SLM_FAIL_IF(!sub(*target, v));
    if (legacy_ref_) return undecided ? std::nullopt : std::optional<bool>(true);
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_string())
      types.push_back(s["type"].get<std::string>());
    else
      for (const auto& t : s["type"]) types.push_back(t.get<std::string>());
    if (s.contains("nullable") && s["nullable"] == true) types.push_back("null");
    SLM_FAIL_IF(std::none_of(types.begin(), types.end(),
                             [&](const std::string& t) { return has_type(v, t); }));
  }
  if (s.contains("const")) SLM_FAIL_IF(!json_equal(s["const"], v));
  if (s.contains("enum")) {
    const auto& e = s["enum"];
    SLM_FAIL_IF(std::none_of(e.begin(), e.end(), [&](const Json& x) { return json_equal(x, v); }));
  }
  if (s.contains("allOf"))
    for (const auto& b : s["allOf"]) SLM_FAIL_IF(!sub(b, v));
  if (s.contains("anyOf")) {
    bool any = false, open = false;
    for (const auto& b : s["anyOf"]) {
      const auto r = check(b, v, depth + 1);
      if (!r)
        open = true;
      else if (*r)
        any = true;
    }
    if (!any && open) return std::nullopt;
    SLM_FAIL_IF(!any);
  }
  if (s.contains("oneOf")) {
    size_t n = 0;
    for (const auto& b : s["oneOf"]) {
      const auto r = check(b, v, depth + 1);
      if (!r) return std::nullopt;
      n += *r;
    }
    SLM_FAIL_IF(n != 1);
  }
  if (s.contains("not")) {
    const auto r = check(s["not"], v, depth + 1);
    if (!r) return std::nullopt;
    SLM_FAIL_IF(*r);
  }
  if (s.contains("if")) {
    const auto r = check(s["if"], v, depth + 1);
    if (!r) return std::nullopt;
    const char* branch = *r ? "then" : "else";
    if (s.contains(branch)) SLM_FAIL_IF(!sub(s[branch], v));
  }
  if (v.is_number()) {
    const double x = v.get<double>();
    auto bound = [&](const char* key) -> std::optional<double> {
      if (!s.contains(key) || !s[key].is_number()) return std::nullopt;
      return s[key].get<double>();
    };
    const bool ex_min_flag = s.contains("exclusiveMinimum") && s["exclusiveMinimum"] == true;
    const bool ex_max_flag = s.contains("exclusiveMaximum") && s["exclusiveMaximum"] == true;
    if (auto b = bound("minimum")) SLM_FAIL_IF(ex_min_flag ? x <= *b : x < *b);
    if (auto b = bound("maximum")) SLM_FAIL_IF(ex_max_flag ? x >= *b : x > *b);
    if (auto b = bound("exclusiveMinimum")) SLM_FAIL_IF(x <= *b);
    if (auto b = bound("exclusiveMaximum")) SLM_FAIL_IF(x >= *b);
    if (s.contains("multipleOf") && s["multipleOf"].is_number())
      SLM_FAIL_IF(!multiple_of(v, s["multipleOf"]));
  }
  if (v.is_string()) {
    const std::string& str = v.get_ref<const std::string&>();
    const size_t n = code_points(str);
    if (s.contains("minLength")) SLM_FAIL_IF(n < s["minLength"].get<double>());
    if (s.contains("maxLength")) SLM_FAIL_IF(n > s["maxLength"].get<double>());
    if (s.contains("pattern")) {
      const auto r = string_matches(regex_to_gbnf(s["pattern"].get<std::string>()), str);
      if (!r) return std::nullopt;
      SLM_FAIL_IF(!*r);
    }
    if (s.contains("format") && s["format"].is_string()) {
      const std::string f = s["format"].get<std::string>();
      if (const auto g = format_to_gbnf(f)) {
        SLM_FAIL_IF(!*string_matches(*g, str));
      } else if (!format_is_annotation(f)) {
        return std::nullopt;
      }
    }
  }
  if (v.is_array()) {
    const size_t n = v.size();
    if (s.contains("minItems")) SLM_FAIL_IF(n < s["minItems"].get<double>());
    if (s.contains("maxItems")) SLM_FAIL_IF(n > s["maxItems"].get<double>());
    size_t first_rest = 0;  // items after the prefix follow items / additionalItems
    const Json* rest = nullptr;
    if (s.contains("prefixItems")) {
      const auto& p = s["prefixItems"];
      for (size_t i = 0; i < n && i < p.size(); ++i) SLM_FAIL_IF(!sub(p[i], v[i]));
      first_rest = p.size();
      if (s.contains("items")) rest = &s["items"];
    } else if (s.contains("items") && s["items"].is_array()) {
      const auto& p = s["items"];
      for (size_t i = 0; i < n && i < p.size(); ++i) SLM_FAIL_IF(!sub(p[i], v[i]));
      first_rest = p.size();
      if (s.contains("additionalItems")) rest = &s["additionalItems"];
    } else if (s.contains("items")) {
      rest = &s["items"];
    }
    if (rest)
      for (size_t i = first_rest; i < n; ++i) SLM_FAIL_IF(!sub(*rest, v[i]));
    if (s.contains("uniqueItems") && s["uniqueItems"] == true)
      for (size_t i = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j) SLM_FAIL_IF(json_equal(v[i], v[j]));
    if (s.contains("contains")) {
      size_t hits = 0;
      for (const auto& x : v) {
        const auto r = check(s["contains"], x, depth + 1);
        if (!r) return std::nullopt;
        hits += *r;
      }
      const double lo = s.contains("minContains") ? s["minContains"].get<double>() : 1;
      SLM_FAIL_IF(hits < lo);
      if (s.contains("maxContains")) SLM_FAIL_IF(hits > s["maxContains"].get<double>());
    }
  }
  if (v.is_object()) {
    const size_t n = v.size();
    if (s.contains("minProperties")) SLM_FAIL_IF(n < s["minProperties"].get<double>());
    if (s.contains("maxProperties")) SLM_FAIL_IF(n > s["maxProperties"].get<double>());
    if (s.contains("required"))
      for (const auto& r : s["required"]) SLM_FAIL_IF(!v.contains(r.get<std::string>()));
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string& key = it.key();
      bool matched = false;
      if (s.contains("properties") && s["properties"].contains(key)) {
        matched = true;
        SLM_FAIL_IF(!sub(s["properties"][key], it.value()));
      }
      if (s.contains("patternProperties")) {
        for (auto p = s["patternProperties"].begin(); p != s["patternProperties"].end(); ++p) {
          const auto r = string_matches(regex_to_gbnf(p.key()), key);
          if (!r) return std::nullopt;
          if (!*r) continue;
          matched = true;
          SLM_FAIL_IF(!sub(p.value(), it.value()));
        }
      }
      if (!matched && s.contains("additionalProperties"))
        SLM_FAIL_IF(!sub(s["additionalProperties"], it.value()));
      if (s.contains("propertyNames")) SLM_FAIL_IF(!sub(s["propertyNames"], Json(key)));
    }
    for (const char* dk : {"dependencies", "dependentRequired", "dependentSchemas"}) {
      if (!s.contains(dk)) continue;
      for (auto d = s[dk].begin(); d != s[dk].end(); ++d) {
        if (!v.contains(d.key())) continue;
        if (d.value().is_array()) {
          for (const auto& r : d.value()) SLM_FAIL_IF(!v.contains(r.get<std::string>()));
        } else {
          SLM_FAIL_IF(!sub(d.value(), v));
        }
      }
    }
  }
#undef SLM_FAIL_IF
  if (undecided) return std::nullopt;
  return true;
}

}  // namespace slm::grammar::detail
