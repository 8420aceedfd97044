// JSON Schema -> GBNF. The result accepts exactly the JSON documents (with
// any whitespace between tokens) that the schema accepts, or compilation
// fails: a keyword it cannot honour is an slm::Error naming its JSON pointer,
// e.g. "json schema: /properties/x/propertyNames: not supported". Nothing is
// silently dropped; unknown keywords are annotations (as the spec says).
//
// Supported: boolean schemas; type (and type lists, OpenAPI nullable); enum
// and const (any JSON values) -- a finite set of values (enum / const, also
// inside allOf or behind $ref) is filtered by validating each value against
// the whole schema, so every keyword beside it is honoured, expressible in a
// grammar or not; properties / required / additionalProperties (true by
// default; false; a schema) -- up to 6 listed properties in any order, more
// in schema order or with the required ones first in "required" order, each
// optional one may be skipped, additional ones may go anywhere;
// minProperties / maxProperties (counted; listed properties then in schema
// order); patternProperties (one pattern matching every key; any patterns
// with additionalProperties false; or one pattern ^[C]{m,n}$ / ^literal
// with no listed properties, other keys taking additionalProperties);
// dependencies / dependentRequired / dependentSchemas (up to 3 keys, type
// object); items / prefixItems (and draft-4 array items with
// additionalItems) / minItems / maxItems; anyOf; oneOf (exact when the
// branches provably exclude each other or each branch's negation is known,
// else anyOf with a warning, or an error with strict_one_of); allOf (merged:
// properties, required, types, bounds; other conflicts are errors); not of
// true / false / {} / types / required / object members, not / anyOf / allOf
// of those (De Morgan); $ref to "#..." JSON pointers ($defs, definitions,
// anywhere), recursion included, siblings applied (2019-09+) or ignored
// ($schema draft-03..07); strings with minLength / maxLength, pattern
// (regex subset: literals, classes, groups, alternation, quantifiers, ^ $
// per top-level branch; with a length bound only for flat patterns: single
// characters with quantifiers) or format (date with real month lengths,
// time, date-time, uuid, email, uri, uri-reference, hostname, ipv4; a format
// no draft defines, e.g. "path", is an annotation, reported as a warning);
// integers and numbers with minimum / maximum / exclusive bounds at integers
// |b| <= 10^18 (digit-range grammars; bounded numbers are written without
// exponent); integer multipleOf (listed between bounds, a remainder
// automaton up to 1000 without), number multipleOf 1, 0.1, 0.01, ... (no
// exponent). Subschemas that match nothing drop out where the language
// allows (optional properties, anyOf branches, items).
// Known limitations (errors, never ignored): propertyNames, dependencies
// beyond the above, if/then/else, other 'not's, contains, uniqueItems true,
// other multipleOf, the formats of the drafts not listed above, external
// $refs, non-integer number bounds, pattern with a length bound beyond flat
// patterns, format with pattern or a length bound; properties in other
// orders than the above are rejected (narrower, never wider).
//
// Cost: O(schema size) rules, up to 2^6 per any-order object and (bound + 1)
// per counted object or length-bounded pattern; every input is bounded by
// SchemaOptions (max_rules).
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
