// Pieces of the JSON Schema compiler shared by its files (not a public API):
// GBNF spelling helpers, string-content grammars (regex subset, formats) and
// integer range grammars. Every function returns a GBNF expression (text that
// can stand where one item of a sequence can) or throws slm::Error whose
// message the caller prefixes with the schema's JSON pointer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace slm::grammar::detail {

// Names of the shared rules the compiler always defines.
inline constexpr const char* kWs = "ws";
inline constexpr const char* kJsonChar = "json-char";  // one character of a string's content

// The shared json-* rules (GBNF text) every compiled schema ends with.
extern const char* kBaseRules;

// Keywords that constrain instances (supported or not); the rest are annotations.
bool is_validation_keyword(const std::string& key);

// A GBNF string literal for these bytes ("..." with escapes).
std::string gbnf_literal(std::string_view bytes);
// One code point written for use inside a GBNF character class.
std::string gbnf_class_char(char32_t c);

// A set of code points as the JSON-encoded string content that spells one of
// them: plain characters as a class, '"', '\\' and controls by their escapes.
// Empty result: the set is empty.
std::string json_content_of(const std::vector<CodeRange>& ranges);

// A regex (the subset documented in json_schema.h) as string content, with
// JSON Schema's search semantics (unanchored ends match any text).
std::string regex_to_gbnf(std::string_view pattern);

// One character position of a flat pattern (regex_flat_units): its string
// content (one JSON-spelled character) and how often it occurs.
struct RegexUnit {
  enum Kind { kOne, kOptional, kStar };
  std::string content;
  Kind kind;
};
// A pattern that is a sequence of single characters with quantifiers
// ("^[a-z]+:[0-9]{2,4}$", unanchored ends included as json-char*), one unit
// per character position; nullopt for other patterns.
std::optional<std::vector<RegexUnit>> regex_flat_units(std::string_view pattern);

// String content that the pattern does NOT match, for the shapes "^[C]q$"
// (one class, one quantifier) and "^literal"; nullopt for other patterns.
std::optional<std::string> regex_complement_gbnf(std::string_view pattern);

// String content for a "format" value, or nullopt when it is not supported.
std::optional<std::string> format_to_gbnf(std::string_view format);
// True for a format no JSON Schema draft defines ("path", "byte", "url", ...):
// validators ignore such a format (an annotation), so the compiler does too.
// The formats of drafts 3 to 2020-12 are never annotations: each is either
// compiled (format_to_gbnf) or an error.
bool format_is_annotation(std::string_view format);

// Decimal integers in [lo, hi] (either side open when absent), as JSON spells
// them (no leading zeros, "-" for negatives). Requires |bounds| <= 10^18.
std::string int_range_gbnf(std::optional<int64_t> lo, std::optional<int64_t> hi);

}  // namespace slm::grammar::detail
