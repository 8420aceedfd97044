// The JSON Schema compiler's state (internal to the grammar module): the
// generated rules in order, $ref targets already named, and the nesting
// depth. json_schema.cpp holds dispatch, refs, constants and numbers;
// schema_containers.cpp holds strings, objects, arrays and the allOf merge.
// Each method returns a GBNF expression and throws slm::Error naming a pointer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "grammar/json_schema.h"
#include "grammar/schema_internal.h"

namespace slm::grammar::detail {

using Json = nlohmann::ordered_json;

// The type names of a schema's "type" (a string or a list of them).
std::vector<std::string> type_names(const Json& t);

// A (sub)schema no instance satisfies. Where the language allows leaving the
// value out (an optional property, one anyOf branch, additional properties or
// items) the compiler drops it; elsewhere it is the compile error.
class Unsatisfiable : public Error {
 public:
  using Error::Error;
};

class SchemaCompiler {
 public:
  SchemaCompiler(const SchemaOptions& options, std::vector<std::string>* warnings)
      : opt_(options), warnings_(warnings) {}
  // Whole GBNF text: root, the shared json-* rules, then one rule per subschema.
  std::string run(const Json& root);

 private:
  [[noreturn]] void fail(const std::string& ptr, const std::string& why) const;
  [[noreturn]] void never(const std::string& ptr, const std::string& why) const;
  // Keeps enum/const values whose JSON type the schema's "type" allows.
  std::vector<const Json*> typed_values(const Json& s,
                                        const std::vector<const Json*>& values) const;
  static std::string child(const std::string& ptr, const std::string& key);
  static bool has_validation(const Json& s, const std::set<std::string>& except);
  std::string reserve(const std::string& ptr);
  void define(const std::string& name, const std::string& body);
  std::string rule(const std::string& ptr, const std::string& body);

  std::string visit(const Json& s, const std::string& ptr);
  std::string typed(const Json& s, const std::string& ptr);
  const Json& resolve(const std::string& ref, const std::string& ptr);
  std::string ref_rule(const std::string& ref, const std::string& ptr);
  std::string const_value(const Json& v, const std::string& ptr, size_t depth);
  void int_bounds(const Json& s, const std::string& ptr, std::optional<int64_t>& lo,
                  std::optional<int64_t>& hi);
  std::string integer(const Json& s, const std::string& ptr);
  std::string number(const Json& s, const std::string& ptr);
  std::string string(const Json& s, const std::string& ptr);
  std::string array(const Json& s, const std::string& ptr);
  std::string object(const Json& s, const std::string& ptr);
  std::string key_not_in(const std::vector<std::string>& keys, const std::string& ptr);
  Json merge_all_of(const Json& s, const std::string& ptr);
  void merge_into(Json& into, const Json& s, const std::string& ptr);
  void merge_plain(Json& into, const Json& s, const std::string& ptr);
  Json flatten_ref(const Json& s, const std::string& ptr, size_t depth);
  // True when no instance can satisfy two of the branches (schema_oneof.cpp).
  bool exclusive(const Json& branches, const std::string& ptr);
  size_t count_bound(const Json& s, const char* key, const std::string& ptr);
  const Json* finite_values(const Json& s, size_t depth);
  // A schema equivalent to {"not": s} without "not" at its top, when one is known
  // (schema_oneof.cpp).
  std::optional<Json> negate(const Json& s, size_t depth);
  std::optional<Json> dependencies_as_any_of(const Json& s);
  std::string length_bounded(const std::vector<RegexUnit>& units, size_t lo,
                             std::optional<size_t> hi, const std::string& ptr);
  std::string counted_members(const std::string& ptr, size_t n, size_t min_props,
                              std::optional<size_t> max_props,
                              const std::vector<bool>& required_flags, const std::string& add_kv,
                              const std::function<std::string(size_t)>& kv);
  std::optional<std::string> one_of_exact(const Json& s, const Json& branches,
                                          const std::string& ptr);

  SchemaOptions opt_;
  std::vector<std::string>* warnings_;
  const Json* root_ = nullptr;
  std::vector<std::pair<std::string, std::string>> rules_;  // name, body
  std::map<std::string, size_t> rule_index_;                // name -> index in rules_
  std::map<std::string, std::string> ref_rules_;            // "#/..." -> rule name
  std::set<std::string> never_refs_;                        // refs found unsatisfiable
  std::vector<std::unique_ptr<Json>> consts_;  // const values wrapped as arrays (finite_values)
  size_t depth_ = 0;
  bool legacy_ref_ = false;  // $schema is draft-03..07: siblings of $ref are ignored
};

}  // namespace slm::grammar::detail
