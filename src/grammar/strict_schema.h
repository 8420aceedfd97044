// OpenAI's Structured Outputs subset of JSON Schema ("strict": true): what a
// strict response_format or function schema must keep to, so that every
// answer has every property and no other. Checked before compiling; the
// compiler (json_schema.h) then honours the schema exactly.
//
// Rules: the root is an object schema (not anyOf); every object schema has
// "additionalProperties": false and lists all its properties in "required";
// only these keywords appear: type (a name or a list, "null" for nullable),
// properties, required, additionalProperties, items, enum, const, anyOf,
// $ref, $defs / definitions, minItems, maxItems, minimum, maximum,
// exclusiveMinimum, exclusiveMaximum, multipleOf, pattern, format, minLength,
// maxLength, and the annotations description, title, default, examples,
// $schema, $id, $comment. Limits: nesting depth 10 (objects and arrays),
// 5000 properties in all, 1000 enum values in all, 120000 characters of
// property names, enum and const strings in all.
//
// Thread-safety: a pure function.
#pragma once

#include <string_view>

namespace slm::grammar {

// Throws slm::Error "POINTER: why" (e.g. "/properties/a: 'additionalProperties'
// must be false in strict mode") for the first place the schema leaves the
// subset, or for JSON that does not parse.
void check_strict_schema(std::string_view schema_json);

}  // namespace slm::grammar
