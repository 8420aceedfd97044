// Validation of one concrete JSON value against a JSON Schema (internal to
// the grammar module). The compiler uses it where the schema admits a finite
// set of values (enum / const, possibly inside allOf): each candidate is kept
// exactly when the whole schema accepts it, so keywords the grammar cannot
// express (not, multipleOf, uniqueItems, dependencies, if/then/else, ...)
// are still honoured there.
//
// Strings match patterns and formats through the same GBNF the compiler
// emits, so a value is judged by the regex subset the compiler supports.
// Cost: O(schema size x value size) per call; recursion is bounded.
// Thread-safety: one instance per compilation.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "grammar/grammar.h"

namespace slm::grammar::detail {

class ValueValidator {
 public:
  using Json = nlohmann::ordered_json;
  // root: the whole schema document ("#..." references resolve in it).
  explicit ValueValidator(const Json& root, bool legacy_ref)
      : root_(root), legacy_ref_(legacy_ref) {}
  // True / false when decided; nullopt when the schema uses something this
  // validator cannot judge (external or anchor $ref, unevaluated*, dynamic
  // refs, an unsupported regex, depth over the limit).
  std::optional<bool> valid(const Json& schema, const Json& value);

 private:
  std::optional<bool> check(const Json& s, const Json& v, size_t depth);
  std::optional<bool> string_matches(const std::string& gbnf_content, const std::string& value);

  const Json& root_;
  bool legacy_ref_;
  std::map<std::string, std::shared_ptr<const Grammar>> grammars_;  // content GBNF -> grammar
};

// JSON equality as JSON Schema defines it: numbers by value, objects
// regardless of member order.
bool json_equal(const nlohmann::ordered_json& a, const nlohmann::ordered_json& b);

}  // namespace slm::grammar::detail
