// JSON Schema -> GBNF. The result accepts exactly the JSON documents (with
// any whitespace between tokens) that the schema accepts, or compilation
// fails: a keyword it cannot honour is an slm::Error naming its JSON pointer,
// e.g. "json schema: /properties/x/propertyNames: not supported". Nothing is
// silently dropped; unknown keywords are annotations (as the spec says).
//
// Supported: boolean schemas; type (and type lists, OpenAPI nullable); enum
// and const (any JSON values, filtered by type); properties / required /
// additionalProperties (true by default; false; a schema) -- properties appear
// in schema order, each optional one may be skipped, additional ones may go
// anywhere; patternProperties (one pattern matching every key, or any patterns
// with additionalProperties false); items / prefixItems (and draft-4 array
// items with additionalItems) / minItems / maxItems; anyOf; oneOf (exact when
// the branches provably exclude each other, else anyOf with a warning, or an
// error with strict_one_of); allOf (merged: properties, required, types,
// bounds; other conflicts are errors); not of true / false / {} / types;
// $ref to "#..." JSON pointers ($defs, definitions, anywhere), recursion
// included, siblings applied (2019-09+) or ignored ($schema draft-03..07);
// strings with minLength / maxLength, pattern (regex subset: literals,
// classes, groups, alternation, quantifiers, ^ $ per top-level branch) or
// format (date with real month lengths, time, date-time, uuid, email, uri,
// uri-reference, hostname, ipv4); integers and numbers with minimum / maximum
// / exclusive bounds at integers |b| <= 10^18 (digit-range grammars; bounded
// numbers are written without exponent). Subschemas that match nothing drop
// out where the language allows (optional properties, anyOf branches, items).
// minProperties 0 or 1.
// Known limitations (errors, never ignored): propertyNames, minProperties > 1,
// maxProperties, dependencies, if/then/else, other 'not's, contains, uniqueItems true,
// multipleOf, other formats, external $refs, non-integer number bounds,
// pattern together with a length bound; properties in another order than the
// schema's are rejected.
//
// Cost: O(schema size) rules; every input is bounded by SchemaOptions.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace slm::grammar {

struct SchemaOptions {
  size_t max_schema_bytes = 4u << 20;
  size_t max_depth = 64;         // nested subschemas (JSON nesting is capped by the parser too)
  size_t max_rules = 200000;     // generated GBNF rules
  size_t max_repeat = 100000;    // largest length bound written as {m,n}
  // oneOf is anyOf when the branches provably exclude each other (disjoint
  // types, const/enum values or a required discriminator property). When
  // they may overlap: strict -> an error; otherwise compiled as anyOf with a
  // warning (an instance valid under two branches is then accepted).
  bool strict_one_of = false;
};

// GBNF for the schema (JSON text). Throws slm::Error "json schema: POINTER: why".
// warnings (optional) receives "json schema: POINTER: why" for each place the
// language is knowingly wider than the schema (see strict_one_of).
std::string json_schema_to_gbnf(std::string_view schema_json, const SchemaOptions& options = {},
                               std::vector<std::string>* warnings = nullptr);
// The same, parsed into a Grammar.
Grammar compile_json_schema(std::string_view schema_json, const SchemaOptions& options = {},
                            std::vector<std::string>* warnings = nullptr);

}  // namespace slm::grammar
