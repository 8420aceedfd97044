// Random JSON Schemas for structured-output tests, and a validator for the
// subset they use. The schemas keep every answer short enough for a random-
// weight model to finish: strings are bounded (maxLength, enum, format or a
// bounded pattern), arrays have maxItems, objects are closed
// (additionalProperties false) and nest at most two levels. Keywords: type,
// properties, required, additionalProperties, enum, const, minimum, maximum,
// minLength, maxLength, pattern, format (date, uuid, ipv4), items, minItems,
// maxItems, anyOf, $ref into $defs, nullable type lists.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>

namespace slm::test {

class SchemaGen {
 public:
  using Json = nlohmann::json;
  explicit SchemaGen(uint64_t seed) : rng_(seed) {}

  // One root object schema; with $defs about a third of the time.
  Json schema() {
    defs_ = Json::object();
    if (pick(3) == 0) {
      defs_["color"] = Json{{"enum", {"red", "green", "blue"}}};
      defs_["point"] = Json{{"type", "object"},
                            {"properties", {{"x", bounded_int()}, {"y", bounded_int()}}},
                            {"required", {"x", "y"}},
                            {"additionalProperties", false}};
    }
    Json s = object(0);
    if (!defs_.empty()) s["$defs"] = defs_;
    return s;
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }

  Json bounded_int() {
    const int lo = pick(50) - 25;
    return Json{{"type", "integer"}, {"minimum", lo}, {"maximum", lo + 1 + pick(200)}};
  }

  Json object(int depth) {
    static const char* kNames[] = {"id", "name", "age", "tags", "kind", "when", "ok", "score", "ref", "addr"};
    Json props = Json::object(), required = Json::array();
    const int n = 1 + pick(4);
    const int first = pick(10);
    for (int i = 0; i < n; ++i) {
      const std::string name = kNames[(first + i) % 10];
      props[name] = value(depth);
      if (pick(3) != 0) required.push_back(name);
    }
    return Json{{"type", "object"}, {"properties", props}, {"required", required}, {"additionalProperties", false}};
  }

  Json value(int depth) {
    static const char* kPatterns[] = {"^[a-z]{1,4}$", "^[A-Z][0-9]{2}$", "^[0-9]{3}-[0-9]{2}$", "^(ab|cd){1,2}x?$"};
    static const char* kFormats[] = {"date", "uuid", "ipv4"};
    switch (pick(depth < 2 ? 12 : 9)) {
      case 0:
        return Json{{"enum", {"alpha", "beta", "gamma", 7, nullptr}}};
      case 1:
        return bounded_int();
      case 2: {
        const int lo = pick(3);
        return Json{{"type", "string"}, {"minLength", lo}, {"maxLength", lo + pick(6)}};
      }
      case 3:
        return Json{{"type", "string"}, {"format", kFormats[pick(3)]}};
      case 4:
        return Json{{"type", "string"}, {"pattern", kPatterns[pick(4)]}};
      case 5:
        return Json{{"type", "boolean"}};
      case 6:
        return Json{{"type", {"string", "null"}}, {"maxLength", 3}};
      case 7:
        return Json{{"const", "fixed"}};
      case 8:
        return Json{{"anyOf", {bounded_int(), Json{{"enum", {"none", "all"}}}}}};
      case 9: {
        const int lo = pick(2);
        Json items = pick(2) ? bounded_int() : Json{{"enum", {"a", "b", "c"}}};
        if (depth < 1 && pick(3) == 0) items = object(depth + 1);
        return Json{{"type", "array"}, {"items", items}, {"minItems", lo}, {"maxItems", lo + 1 + pick(2)}};
      }
      case 10:
        if (!defs_.empty()) return Json{{"$ref", pick(2) ? "#/$defs/color" : "#/$defs/point"}};
        return object(depth + 1);
      default:
        return object(depth + 1);
    }
  }

  std::mt19937_64 rng_;
  Json defs_;
};

// Whether instance is valid under schema (the subset above); why names the
// first failure.
inline bool validate(const nlohmann::json& x, const nlohmann::json& s, const nlohmann::json& root,
                     std::string& why, const std::string& at = "") {
  using Json = nlohmann::json;
  auto fail = [&](const std::string& w) {
    why = (at.empty() ? "/" : at) + ": " + w;
    return false;
  };
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return validate(x, root.at(Json::json_pointer(ref.substr(1))), root, why, at);
  }
  if (s.contains("anyOf")) {
    for (const Json& b : s["anyOf"]) {
      std::string w;
      if (validate(x, b, root, w, at)) return true;
    }
    return fail("no anyOf branch matches");
  }
  if (s.contains("enum")) {
    for (const Json& v : s["enum"])
      if (v == x) return true;
    return fail("not in enum");
  }
  if (s.contains("const") && s["const"] != x) return fail("not the const");
  if (s.contains("type")) {
    const Json& t = s["type"];
    auto is = [&](const std::string& name) {
      if (name == "integer") return x.is_number_integer();
      if (name == "number") return x.is_number();
      if (name == "string") return x.is_string();
      if (name == "boolean") return x.is_boolean();
      if (name == "null") return x.is_null();
      if (name == "object") return x.is_object();
      if (name == "array") return x.is_array();
      return false;
    };
    bool ok = false;
    if (t.is_string()) ok = is(t);
    else
      for (const Json& n : t) ok = ok || is(n);
    if (!ok) return fail("wrong type " + std::string(x.type_name()));
  }
  if (x.is_number()) {
    if (s.contains("minimum") && x.get<double>() < s["minimum"].get<double>()) return fail("below minimum");
    if (s.contains("maximum") && x.get<double>() > s["maximum"].get<double>()) return fail("above maximum");
  }
  if (x.is_string()) {
    const std::string v = x;
    size_t n = 0;  // code points
    for (const char c : v) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (s.contains("minLength") && n < s["minLength"].get<size_t>()) return fail("shorter than minLength");
    if (s.contains("maxLength") && n > s["maxLength"].get<size_t>()) return fail("longer than maxLength");
    if (s.contains("pattern") && !std::regex_search(v, std::regex(s["pattern"].get<std::string>())))
      return fail("does not match the pattern");
    if (s.contains("format")) {
      const std::string f = s["format"];
      if (f == "uuid" &&
          !std::regex_match(v, std::regex("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")))
        return fail("not a uuid");
      if (f == "ipv4") {
        std::smatch m;
        if (!std::regex_match(v, m, std::regex("(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})\\.(\\d{1,3})")))
          return fail("not an ipv4 address");
        for (int i = 1; i <= 4; ++i) {
          const std::string o = m[i];
          if (std::stoi(o) > 255 || (o.size() > 1 && o[0] == '0')) return fail("bad ipv4 octet");
        }
      }
      if (f == "date") {
        std::smatch m;
        if (!std::regex_match(v, m, std::regex("(\\d{4})-(\\d{2})-(\\d{2})"))) return fail("not a date");
        const int y = std::stoi(m[1].str()), mo = std::stoi(m[2].str()), d = std::stoi(m[3].str());
        static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (mo < 1 || mo > 12 || d < 1 || d > (mo == 2 && !leap ? 28 : kDays[mo - 1])) return fail("no such date");
      }
    }
  }
  if (x.is_array()) {
    if (s.contains("minItems") && x.size() < s["minItems"].get<size_t>()) return fail("fewer than minItems");
    if (s.contains("maxItems") && x.size() > s["maxItems"].get<size_t>()) return fail("more than maxItems");
    if (s.contains("items"))
      for (size_t i = 0; i < x.size(); ++i)
        if (!validate(x[i], s["items"], root, why, at + "/" + std::to_string(i))) return false;
  }
  if (x.is_object()) {
    const Json props = s.value("properties", Json::object());
    for (const Json& r : s.value("required", Json::array()))
      if (!x.contains(r.get<std::string>())) return fail("missing required '" + r.get<std::string>() + "'");
    for (auto it = x.begin(); it != x.end(); ++it) {
      if (props.contains(it.key())) {
        if (!validate(*it, props[it.key()], root, why, at + "/" + it.key())) return false;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return fail("unexpected property '" + it.key() + "'");
      }
    }
  }
  return true;
}

}  // namespace slm::test
