// Strings, objects, arrays and the allOf merge of the JSON Schema compiler.
//
// Objects: properties in schema order; for n properties two chains of O(n)
// rules: B(i) "nothing emitted yet, next candidate is property i" and A(i)
// "something emitted, each later item starts with a comma", so optional
// properties can be skipped with the commas still exact. Additional
// properties (keys spelled differently from every listed key: a trie of the
// listed keys) may follow any item. Arrays: prefix items as a chain of rules,
// then the rest as a bounded repetition.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "base/error.h"
#include "base/utf8.h"
#include "grammar/matcher.h"
#include "grammar/schema_compiler.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

namespace {
const char* kQuote = "\"\\\"\"";  // GBNF literal for one '"'
}

size_t SchemaCompiler::count_bound(const Json& s, const char* key, const std::string& ptr) {
  const auto& v = s[key];
  if (!v.is_number() || v.get<double>() < 0 || std::floor(v.get<double>()) != v.get<double>())
    fail(child(ptr, key), "must be a non-negative integer");
  if (v.get<double>() > static_cast<double>(opt_.max_repeat))
    fail(child(ptr, key),
         std::string("is above the supported limit of ") + std::to_string(opt_.max_repeat));
  return static_cast<size_t>(v.get<double>());
}

std::string SchemaCompiler::string(const Json& s, const std::string& ptr) {
  const bool has_len = s.contains("minLength") || s.contains("maxLength");
  if (s.contains("format") && s["format"].is_string() &&
      format_is_annotation(s["format"].get<std::string>())) {
    if (warnings_)
      warnings_->push_back("json schema: " + child(ptr, "format") + ": format '" +
                           s["format"].get<std::string>() +
                           "' is defined by no JSON Schema draft; ignored (an annotation)");
    Json rest = s;
    rest.erase("format");
    return string(rest, ptr);
  }
  if (s.contains("format")) {
    if (!s["format"].is_string()) fail(child(ptr, "format"), "must be a string");
    if (has_len || s.contains("pattern"))
      fail(child(ptr, "format"), "format together with pattern or a length bound is not supported");
    const auto f = format_to_gbnf(s["format"].get<std::string>());
    if (!f)
      fail(child(ptr, "format"),
           std::string("format '") + s["format"].get<std::string>() + "' is not supported");
    return std::string(kQuote) + " " + *f + " " + kQuote;
  }
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) fail(child(ptr, "pattern"), "must be a string");
    if (has_len) {
      const auto units = regex_flat_units(s["pattern"].get<std::string>());
      if (!units)
        fail(child(ptr, "pattern"),
             "pattern together with minLength/maxLength is supported only for a sequence of single "
             "characters with quantifiers (no alternation or multi-character groups)");
      const size_t lo = s.contains("minLength") ? count_bound(s, "minLength", ptr) : 0;
      std::optional<size_t> hi;
      if (s.contains("maxLength")) hi = count_bound(s, "maxLength", ptr);
      if (hi && *hi < lo) never(child(ptr, "maxLength"), "is below minLength");
      return std::string(kQuote) + " " + length_bounded(*units, lo, hi, ptr) + " " + kQuote;
    }
    try {
      return std::string(kQuote) + " " + regex_to_gbnf(s["pattern"].get<std::string>()) + " " +
             kQuote;
    } catch (const Error& e) {
      fail(child(ptr, "pattern"), e.what());
    }
  }
  if (!has_len) return "json-string";
  const size_t lo = s.contains("minLength") ? count_bound(s, "minLength", ptr) : 0;
  std::string rep = std::string("{") + std::to_string(lo) + ",";
  if (s.contains("maxLength")) {
    const size_t hi = count_bound(s, "maxLength", ptr);
    if (hi < lo) fail(child(ptr, "maxLength"), "is below minLength");
    rep += std::to_string(hi);
  }
  return std::string(kQuote) + " json-char" + rep + "} " + kQuote;
}

// A JSON string (with its quotes) whose encoded content is none of keys: a
// walk down the trie of keys that may leave it at any character.
std::string SchemaCompiler::key_not_in(const std::vector<std::string>& keys,
                                       const std::string& ptr) {
  std::vector<std::u32string> ks;
  for (const std::string& k : keys) {
    if (k.size() > 256) fail(ptr, "property names longer than 256 bytes are not supported");
    std::u32string u;
    for (size_t i = 0; i < k.size();) {
      size_t len = 0;
      u += utf8::decode(k, i, &len);
      i += len;
    }
    ks.push_back(u);
  }
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  // node(lo, hi, d): the keys ks[lo..hi) share their first d characters.
  std::function<std::string(size_t, size_t, size_t)> node = [&](size_t lo, size_t hi, size_t d) {
    std::string alts;
    bool terminal = false;
    std::string children_class, children;
    bool backslash_child = false;
    for (size_t i = lo; i < hi;) {
      if (ks[i].size() == d) {
        terminal = true;
        ++i;
        continue;
      }
      const char32_t c = ks[i][d];
      size_t j = i;
      while (j < hi && ks[j].size() > d && ks[j][d] == c) ++j;
      std::string lit;
      utf8::append(lit, c);
      children += std::string(" | ") + gbnf_literal(lit) + " " + node(i, j, d + 1);
      children_class += gbnf_class_char(c);
      if (c == '\\') backslash_child = true;
      i = j;
    }
    if (!terminal) alts += std::string(kQuote) + " | ";
    alts += std::string("[^\"\\\\\\x00-\\x1F") + children_class + "] json-char* " + kQuote;
    if (!backslash_child)
      alts += std::string(" | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) json-char* ") +
              std::string(kQuote);
    return rule(ptr + "/key", alts + children);
  };
  return rule(ptr + "/key", std::string(kQuote) + " " + node(0, ks.size(), 0));
}

std::string SchemaCompiler::object(const Json& s, const std::string& ptr) {
  // minProperties 1 is "not empty", which the member chains express directly.
  const size_t min_props = s.contains("minProperties") ? count_bound(s, "minProperties", ptr) : 0;
  std::optional<size_t> max_props;
  if (s.contains("maxProperties")) max_props = count_bound(s, "maxProperties", ptr);
  std::vector<std::pair<std::string, std::string>> props;  // key, value expression
  std::vector<bool> required_flags;
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) fail(child(ptr, "required"), "must be an array");
    for (const auto& r : s["required"]) {
      if (!r.is_string()) fail(child(ptr, "required"), "must list strings");
      required.insert(r.get<std::string>());
    }
  }
  std::string additional = "json-value";
  if (s.contains("additionalProperties")) {
    const auto& a = s["additionalProperties"];
    if (a.is_boolean()) {
      additional = a.get<bool>() ? "json-value" : "";
    } else {
      try {
        additional = visit(a, child(ptr, "additionalProperties"));
      } catch (const Unsatisfiable&) {
        additional = "";  // no additional property can be valid
      }
    }
  }
  // patternProperties: one pattern that matches every key (its schema then
  // applies to every property), or patterns that all additional keys must
  // match (additionalProperties false) with no listed key matching them.
  const Json* every_key = nullptr;  // schema of a pattern matching every (non-empty) key
  bool nonempty_keys = false;
  std::string pattern_key;  // GBNF of an additional key in the second form
  std::string split_kv;     // third form: a whole key-value pair, pattern keys and the rest
  if (s.contains("patternProperties") && !s["patternProperties"].empty()) {
    const auto& pp = s["patternProperties"];
    const std::string pptr = child(ptr, "patternProperties");
    if (!pp.is_object()) fail(pptr, "must be an object");
    const std::string re = pp.begin().key();
    const bool all = re == "" || re == "^" || re == ".*" || re == "^.*" || re == "^.*$";
    nonempty_keys = re == ".+" || re == "^.+" || re == "^.+$";
    if (pp.size() == 1 && (all || nonempty_keys)) {
      every_key = &pp.begin().value();
      try {
        additional = visit(*every_key, child(pptr, re));
      } catch (const Unsatisfiable&) {
        additional = "";
      }
    } else if (additional.empty()) {
      std::string contents;
      for (auto it = pp.begin(); it != pp.end(); ++it) {
        if (it.value() != pp.begin().value())
          fail(pptr, "several patterns with different schemas are not supported");
        try {
          contents += (contents.empty() ? "" : " | ") + regex_to_gbnf(it.key());
        } catch (const Error& e) {
          fail(child(pptr, it.key()), e.what());
        }
      }
      pattern_key = std::string(kQuote) + " ( " + contents + " ) " + kQuote;
      try {
        additional = visit(pp.begin().value(), child(pptr, re));
      } catch (const Unsatisfiable&) {
        additional = "";
        pattern_key.clear();
      }
    } else if (pp.size() == 1 && (!s.contains("properties") || s["properties"].empty()) &&
               (!s.contains("required") || s["required"].empty()) && regex_complement_gbnf(re)) {
      // Keys the pattern matches take its schema, all others additionalProperties.
      std::string matched;
      try {
        matched = std::string(kQuote) + " " + regex_to_gbnf(re) + " " + kQuote + " ws \":\" ws " +
                  visit(pp.begin().value(), child(pptr, re));
      } catch (const Unsatisfiable&) {
      }
      split_kv = std::string(kQuote) + " " + *regex_complement_gbnf(re) + " " + kQuote +
                 " ws \":\" ws " + additional;
      if (!matched.empty()) split_kv = matched + " | " + split_kv;
    } else {
      fail(pptr,
           "supported only with additionalProperties false, one pattern matching every key, or one "
           "pattern of the form ^[...]{m,n}$ or ^literal and no listed properties");
    }
  }
  std::set<std::string> listed;
  std::vector<std::string> excluded;  // listed keys whose schema matches nothing
  if (s.contains("properties")) {
    const auto& ps = s["properties"];
    if (!ps.is_object()) fail(child(ptr, "properties"), "must be an object");
    for (auto it = ps.begin(); it != ps.end(); ++it) {
      listed.insert(it.key());
      const bool req = required.count(it.key()) > 0;
      std::string value;
      try {
        if (every_key && !(nonempty_keys && it.key().empty()))
          value = visit(
              merge_all_of(Json{{"allOf", {it.value(), *every_key}}}, child(ptr, "properties")),
              child(child(ptr, "properties"), it.key()));
        else
          value = visit(it.value(), child(child(ptr, "properties"), it.key()));
      } catch (const Unsatisfiable&) {
        if (req) throw;
        excluded.push_back(it.key());  // can never appear: not even as an additional property
        continue;
      }
      props.push_back({it.key(), value});
      required_flags.push_back(req);
    }
  }
  for (const std::string& r : required) {
    if (listed.count(r)) continue;
    if (additional.empty())
      never(child(ptr, "required"),
            std::string("'") + r + "' is required but additionalProperties is false");
    props.push_back({r, additional});
    required_flags.push_back(true);
    listed.insert(r);
  }
  const size_t n = props.size();
  std::vector<std::string> encoded;
  for (const auto& p : props)
    encoded.push_back(Json(p.first).dump(-1, ' ', false, Json::error_handler_t::replace));
  if (!pattern_key.empty()) {
    // Listed keys must stay out of the pattern (they would escape their own
    // schema); a required key that is not listed must match it.
    auto g =
        std::make_shared<const Grammar>(parse_gbnf("root ::= " + pattern_key + "\n" + kBaseRules));
    for (size_t i = 0; i < n; ++i) {
      Matcher m(g);
      const bool matches = m.accept(encoded[i]) == encoded[i].size() && m.is_complete();
      if (listed.count(props[i].first) && s.contains("properties") &&
          s["properties"].contains(props[i].first)) {
        if (matches)
          fail(child(ptr, "patternProperties"),
               "listed property '" + props[i].first + "' also matches a pattern");
      } else if (!matches) {
        never(child(ptr, "required"),
              "'" + props[i].first + "' matches no pattern and additionalProperties is false");
      }
    }
  }
  std::string adds, add_kv;
  if (!additional.empty()) {
    std::vector<std::string> contents;
    for (const std::string& e : encoded) contents.push_back(e.substr(1, e.size() - 2));
    for (const std::string& k : excluded) {
      const std::string e = Json(k).dump(-1, ' ', false, Json::error_handler_t::replace);
      contents.push_back(e.substr(1, e.size() - 2));
    }
    if (nonempty_keys) contents.push_back("");
    const std::string key = pattern_key.empty() ? key_not_in(contents, ptr) : pattern_key;
    add_kv =
        rule(ptr + "/additional", split_kv.empty() ? key + " ws \":\" ws " + additional : split_kv);
    adds = rule(ptr + "/additional", std::string("( ws \",\" ws ") + add_kv + " )*");
  }
  auto kv = [&](size_t i) { return gbnf_literal(encoded[i]) + " ws \":\" ws " + props[i].second; };
  if (min_props > 1 || max_props)
    return counted_members(ptr, n, min_props, max_props, required_flags, add_kv, kv);
  // The members with the listed properties in the order ord (indices into props).
  auto chain = [&](const std::vector<size_t>& ord) {
    std::vector<std::string> a(n + 1), b(n);
    a[n] = adds.empty() ? rule(ptr + "/a", "") : adds;
    for (size_t j = n; j-- > 0;) {
      const size_t i = ord[j];
      const std::string item =
          std::string("ws \",\" ws ") + kv(i) + (adds.empty() ? "" : std::string(" ") + adds);
      a[j] = rule(ptr + "/a",
                  (required_flags[i] ? item : std::string("( ") + item + " )?") + " " + a[j + 1]);
    }
    for (size_t j = n; j-- > 0;) {
      const size_t i = ord[j];
      std::string body = kv(i) + (adds.empty() ? "" : std::string(" ") + adds) + " " + a[j + 1];
      if (!required_flags[i] && j + 1 < n) body += std::string(" | ") + b[j + 1];
      b[j] = rule(ptr + "/b", body);
    }
    std::string content;
    if (n > 0) content = b[0];
    if (!add_kv.empty())
      content += (content.empty() ? "" : " | ") + add_kv + " " + adds + " " + a[0];
    return content;
  };
  // Beyond kAnyOrder properties: schema order, and also (when it differs) the
  // required properties first in the order "required" lists them: writers
  // often follow either. Other orders are rejected there (narrower than the
  // schema, never wider).
  std::vector<size_t> schema_order(n), required_order;
  for (size_t i = 0; i < n; ++i) schema_order[i] = i;
  if (s.contains("required")) {
    for (const auto& r : s["required"])
      for (size_t i = 0; i < n; ++i)
        if (props[i].first == r.get<std::string>() &&
            std::find(required_order.begin(), required_order.end(), i) == required_order.end())
          required_order.push_back(i);
    for (size_t i = 0; i < n; ++i)
      if (!required_flags[i]) required_order.push_back(i);
  }
  // Up to kAnyOrder listed properties may come in any order: one rule per
  // set of properties already written (2^n rules).
  constexpr size_t kAnyOrder = 6;
  std::string content;
  if (n >= 2 && n <= kAnyOrder) {
    uint32_t required_mask = 0;
    for (size_t i = 0; i < n; ++i)
      if (required_flags[i]) required_mask |= 1u << i;
    const std::string more = adds.empty() ? "" : std::string(" ") + adds;
    std::vector<std::string> after(
        size_t{1} << n);  // after[S]: the rest once the properties in S are written
    for (uint32_t set = (1u << n) - 1;; --set) {
      std::string body = (set & required_mask) == required_mask ? "\"\"" : "";
      for (size_t i = 0; i < n; ++i)
        if (!(set & (1u << i)))
          body += (body.empty() ? "" : " | ") + std::string("ws \",\" ws ") + kv(i) + more + " " +
                  after[set | (1u << i)];
      after[set] = rule(ptr + "/set", body);
      if (set == 0) break;
    }
    for (size_t i = 0; i < n; ++i)
      content += (content.empty() ? "" : " | ") + kv(i) + more + " " + after[1u << i];
    if (!add_kv.empty()) content += " | " + add_kv + " " + adds + " " + after[0];
  } else {
    content = chain(schema_order);
    if (required_order.size() == n && required_order != schema_order)
      content += " | " + chain(required_order);
  }
  if (content.empty()) {
    if (min_props > 0) never(child(ptr, "minProperties"), "no property is allowed");
    return "( \"{\" ws \"}\" )";
  }
  const bool any_required = min_props > 0 || std::find(required_flags.begin(), required_flags.end(),
                                                       true) != required_flags.end();
  const std::string c = rule(ptr + "/members", content);
  return std::string("( \"{\" ws ") +
         (any_required ? c + " ws" : std::string("( ") + c + " ws )?") + " \"}\" )";
}

// An object whose property count is bounded: states R(j, c) = "at listed
// property j with c properties written" (c capped at the bound that matters),
// listed properties in schema order, additional ones anywhere. Dead states
// (no way to a valid end) are left out. (n + 1) x (cap + 1) rules.
std::string SchemaCompiler::counted_members(const std::string& ptr, size_t n, size_t min_props,
                                            std::optional<size_t> max_props,
                                            const std::vector<bool>& required_flags,
                                            const std::string& add_kv,
                                            const std::function<std::string(size_t)>& kv) {
  if (max_props && *max_props < min_props)
    never(child(ptr, "maxProperties"), "is below minProperties");
  const size_t cap = max_props ? *max_props : min_props;
  if ((n + 1) * (cap + 1) > 20000)
    fail(child(ptr, max_props ? "maxProperties" : "minProperties"),
         "too many property counts to track");
  auto next_c = [&](size_t c) { return max_props ? c + 1 : std::min(c + 1, cap); };
  auto can_add = [&](size_t c) { return !max_props || c < *max_props; };
  // r[j][c]: rule name, or "" when dead. Built from the end; additional
  // properties keep j, so c runs downward (c + 1 is built first).
  std::vector<std::vector<std::string>> r(n + 1, std::vector<std::string>(cap + 1));
  for (size_t j = n + 1; j-- > 0;) {
    for (size_t c = cap + 1; c-- > 0;) {
      const std::string sep = c == 0 ? "" : "ws \",\" ws ";
      std::string body;
      auto alt = [&](const std::string& a) { body += (body.empty() ? "" : " | ") + a; };
      if (j == n && c >= min_props) alt("\"\"");
      if (j < n && can_add(c) && !r[j + 1][next_c(c)].empty())
        alt(sep + kv(j) + " " + r[j + 1][next_c(c)]);
      if (j < n && !required_flags[j] && !r[j + 1][c].empty()) alt(r[j + 1][c]);
      const bool self_loop = !max_props && c == cap;  // counts past minProperties are all alike
      if (!add_kv.empty() && can_add(c) && !self_loop && !r[j][next_c(c)].empty())
        alt(sep + add_kv + " " + r[j][next_c(c)]);
      if (body.empty()) continue;
      r[j][c] = reserve(ptr + "/count");
      if (!add_kv.empty() && self_loop) alt(sep + add_kv + " " + r[j][c]);
      define(r[j][c], body);
    }
  }
  if (r[0][0].empty()) never(ptr, "no object satisfies the property counts");
  return std::string("( \"{\" ws ") + r[0][0] + " ws \"}\" )";
}

// A flat pattern's units with the string's length in [lo, hi]: states
// R(i, u) = "at unit i with u characters written" (u capped at lo when there
// is no upper bound); dead states are left out. units x (cap + 1) rules.
std::string SchemaCompiler::length_bounded(const std::vector<RegexUnit>& units, size_t lo,
                                           std::optional<size_t> hi, const std::string& ptr) {
  const size_t n = units.size(), cap = hi ? *hi : lo;
  if ((n + 1) * (cap + 1) > 30000)
    fail(child(ptr, "pattern"), "pattern with a length bound needs too many grammar rules");
  auto inc = [&](size_t u) { return hi ? u + 1 : std::min(u + 1, cap); };
  auto can_take = [&](size_t u) { return !hi || u < *hi; };
  std::vector<std::vector<std::string>> r(n + 1, std::vector<std::string>(cap + 1));  // "" = dead
  for (size_t u = lo; u <= cap; ++u) r[n][u] = "\"\"";
  for (size_t i = n; i-- > 0;) {
    const RegexUnit& unit = units[i];
    for (size_t u = cap + 1; u-- > 0;) {
      std::string body;
      auto alt = [&](const std::string& a) { body += (body.empty() ? "" : " | ") + a; };
      const bool loop = unit.kind == RegexUnit::kStar && inc(u) == u;
      if (can_take(u)) {
        const size_t ni = unit.kind == RegexUnit::kStar ? i : i + 1;
        if (!loop && !r[ni][inc(u)].empty()) alt(unit.content + " " + r[ni][inc(u)]);
      }
      if (unit.kind != RegexUnit::kOne && !r[i + 1][u].empty()) alt(r[i + 1][u]);
      if (body.empty()) continue;
      r[i][u] = reserve(ptr + "/len");
      if (loop && can_take(u)) alt(unit.content + " " + r[i][u]);
      define(r[i][u], body);
    }
  }
  if (r[0][0].empty()) never(ptr, "no string matches the pattern within the length bounds");
  return r[0][0];
}

std::string SchemaCompiler::array(const Json& s, const std::string& ptr) {
  if (s.contains("uniqueItems") && s["uniqueItems"] != false)
    fail(child(ptr, "uniqueItems"), "not supported");
  std::vector<std::string> prefix;
  std::optional<std::string> rest = "json-value";
  auto rest_of = [&](const char* key) -> std::optional<std::string> {
    if (!s.contains(key)) return std::string("json-value");
    const auto& v = s[key];
    if (v.is_boolean())
      return v.get<bool>() ? std::optional<std::string>("json-value") : std::nullopt;
    try {
      return visit(v, child(ptr, key));
    } catch (const Unsatisfiable&) {
      return std::nullopt;  // no further item can be valid
    }
  };
  const char* prefix_key = s.contains("prefixItems")                        ? "prefixItems"
                           : (s.contains("items") && s["items"].is_array()) ? "items"
                                                                            : nullptr;
  if (prefix_key) {
    const auto& p = s[prefix_key];
    if (!p.is_array()) fail(child(ptr, prefix_key), "must be an array");
    bool cut = false;  // an unsatisfiable prefix item ends the array before it
    for (size_t i = 0; i < p.size() && !cut; ++i) {
      try {
        prefix.push_back(visit(p[i], child(ptr, prefix_key) + "/" + std::to_string(i)));
      } catch (const Unsatisfiable&) {
        cut = true;
      }
    }
    rest = cut ? std::nullopt
               : rest_of(std::string(prefix_key) == "items" ? "additionalItems" : "items");
  } else {
    rest = rest_of("items");
  }
  const size_t k = prefix.size();
  const size_t m = s.contains("minItems") ? count_bound(s, "minItems", ptr) : 0;
  std::optional<size_t> cap;
  if (s.contains("maxItems")) cap = count_bound(s, "maxItems", ptr);
  if (!rest) cap = cap ? std::min(*cap, k) : k;
  if (cap && *cap < m) never(ptr, "minItems is above the most items the array can hold");
  if (cap && *cap == 0) return "( \"[\" ws \"]\" )";
  if (k > 10000) fail(child(ptr, prefix_key), "too many prefix items");
  // tail[i]: the items after the first i, each with its comma.
  const size_t t = std::max<size_t>(k, 1);
  std::vector<std::string> tail(t + 1);
  for (size_t i = t; i >= 1; --i) {
    std::string body;
    if (cap && i >= *cap) {
      body = "";
    } else if (i >= k) {
      if (rest)
        body = std::string("( ws \",\" ws ") + *rest + " ){" + std::to_string(m > i ? m - i : 0) +
               "," + (cap ? std::to_string(*cap - i) : "") + "}";
    } else {
      const std::string seg = std::string("ws \",\" ws ") + prefix[i] + " " + tail[i + 1];
      body = i >= m ? std::string("( ") + seg + " )?" : seg;
    }
    tail[i] = rule(ptr + "/items", body);
  }
  const std::string first = (k > 0 ? prefix[0] : *rest) + " " + tail[1];
  const std::string content = rule(ptr + "/items", first);
  return std::string("( \"[\" ws ") +
         (m == 0 ? std::string("( ") + content + " ws )?" : content + " ws") + " \"]\" )";
}

}  // namespace slm::grammar::detail
