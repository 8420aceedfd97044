// JSON Schema compilation: each supported feature with valid and invalid
// instances, and the unsupported-feature errors with their JSON pointers.
#include <gtest/gtest.h>

#include <cstdio>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"

namespace slm::grammar {
namespace {

struct Case {
  const char* schema;
  std::vector<const char*> valid, invalid;
};

bool accepts(const std::shared_ptr<const Grammar>& g, const std::string& doc) {
  Matcher m(g);
  return m.accept(doc) == doc.size() && m.is_complete();
}

void run(const Case& c) {
  std::shared_ptr<const Grammar> g;
  try {
    g = std::make_shared<const Grammar>(compile_json_schema(c.schema));
  } catch (const Error& e) {
    FAIL() << c.schema << ": " << e.what() << "\n" << json_schema_to_gbnf(c.schema);
  }
  for (const char* v : c.valid) EXPECT_TRUE(accepts(g, v)) << c.schema << " should accept " << v;
  for (const char* v : c.invalid) EXPECT_FALSE(accepts(g, v)) << c.schema << " should reject " << v;
}

std::string error_of(const std::string& schema) {
  try {
    compile_json_schema(schema);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, TypesAndTypeLists) {
  run({R"({})", {"1", "\"x\"", "{\"a\":[null]}", " true "}, {"", "tru", "{"}});
  run({R"(true)", {"[]"}, {"x"}});
  run({R"({"type":"string"})", {"\"\"", "\"a\\\"b\\u00e9\"", "\"é😀\""}, {"1", "\"a", "\"\n\""}});
  run({R"({"type":"integer"})", {"0", "-12", "123456789012345678901"}, {"1.5", "01", "-", "1e3"}});
  run({R"({"type":"number"})", {"0", "-1.5e-3", "2E+10"}, {".5", "1.", "+1"}});
  run({R"({"type":"boolean"})", {"true", "false"}, {"null", "1"}});
  run({R"({"type":"null"})", {"null"}, {"false"}});
  run({R"({"type":["string","null"]})", {"null", "\"a\""}, {"1"}});
  run({R"({"type":"integer","nullable":true})", {"null", "3"}, {"\"3\""}});
}

TEST(JsonSchema, EnumAndConst) {
  run({R"({"enum":["red","green",3,null,{"a":[1,2]}]})",
       {"\"red\"", "3", "null", "{\"a\":[1,2]}", "{ \"a\" : [ 1 , 2 ] }"},
       {"\"blue\"", "\"re\"", "4", "{\"a\":[1]}"}});
  run({R"({"const":"x\"y"})", {"\"x\\\"y\""}, {"\"xy\""}});
}

TEST(JsonSchema, ObjectsRequiredAndOptional) {
  const char* s = R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},
      "c":{"type":"boolean"}},"required":["b"],"additionalProperties":false})";
  run({s,
       {"{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", "{\"b\":\"x\",\"c\":true}",
        "{ \"a\" : 1 , \"b\" : \"\" , \"c\" : false }"},
       {"{}", "{\"a\":1}", "{\"b\":1}", "{\"b\":\"x\",}", "{,\"b\":\"x\"}", "{\"b\":\"x\",\"d\":1}",
        "{\"a\":1,,\"b\":\"x\"}"}});
  run({R"({"type":"object","properties":{"a":{"type":"integer"}}})",
       {"{}", "{\"a\":1}", "{\"zz\":[1]}", "{\"a\":1,\"b\":\"x\",\"c\":null}", "{\"ab\":\"s\"}",
        "{\"\":1}"},
       {"{\"a\":\"x\"}", "{\"b\":1,}"}});
  run({R"({"type":"object","additionalProperties":{"type":"integer"}})",
       {"{}", "{\"x\":1,\"y\":2}"},
       {"{\"x\":\"s\"}"}});
  run({R"({"type":"object","properties":{"a":{},"b":{}},"minProperties":1,"additionalProperties":false})",
       {"{\"a\":1}", "{\"b\":1}", "{\"a\":1,\"b\":2}"},
       {"{}"}});
  run({R"({"type":"object","minProperties":1})", {"{\"z\":1}"}, {"{}"}});
  run({R"({"type":"object","required":["id"]})",
       {"{\"id\":null}", "{\"x\":1,\"id\":2}"},
       {"{}", "{\"x\":1}"}});
}

TEST(JsonSchema, Arrays) {
  run({R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})",
       {"[1]", "[1,2,3]", "[ 1 , 2 ]"},
       {"[]", "[1,2,3,4]", "[\"a\"]", "[1,]"}});
  run({R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})",
       {"[]", "[\"a\"]", "[\"a\",1]"},
       {"[1]", "[\"a\",1,2]"}});
  run({R"({"type":"array","prefixItems":[{"type":"string"}],"items":{"type":"null"},"minItems":2})",
       {"[\"a\",null]", "[\"a\",null,null]"},
       {"[\"a\"]", "[\"a\",1]"}});
  run({R"({"type":"array","items":[{"type":"integer"}],"additionalItems":false})",
       {"[1]", "[]"},
       {"[1,2]"}});
  run({R"({"type":"array"})", {"[]", "[1,\"a\",[{}]]"}, {"[1 2]"}});
}

TEST(JsonSchema, Combinators) {
  run({R"({"anyOf":[{"type":"integer"},{"type":"string","maxLength":2}]})",
       {"1", "\"ab\""},
       {"\"abc\"", "null"}});
  run({R"({"oneOf":[{"const":1},{"const":2}]})", {"1", "2"}, {"3"}});
  run({R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
      {"properties":{"b":{"type":"string"}},"required":["b"]}]})",
       {"{\"a\":1,\"b\":\"x\"}"},
       {"{\"a\":1}", "{\"b\":\"x\"}"}});
  run({R"({"type":"object","properties":{"k":{"type":"integer"}},"anyOf":[{"required":["k"]},{"properties":{"z":{"type":"null"}},"required":["z"]}]})",
       {"{\"k\":1}", "{\"z\":null}"},
       {"{}", "{\"k\":\"s\"}"}});
}

TEST(JsonSchema, OneOfIsExactWhenBranchesExclude) {
  std::vector<std::string> warnings;
  compile_json_schema(R"({"oneOf":[{"type":"string"},{"type":"integer"}]})", {}, &warnings);
  compile_json_schema(R"({"oneOf":[{"const":1},{"enum":[2,3]}]})", {}, &warnings);
  compile_json_schema(R"({"oneOf":[{"properties":{"kind":{"const":"a"},"x":{}},"required":["kind"]},
      {"properties":{"kind":{"const":"b"}},"required":["kind"]}]})",
                      {}, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  const char* overlap =
      R"({"properties":{"v":{"oneOf":[{"type":"string","minLength":2},{"type":"string","maxLength":5}]}}})";
  compile_json_schema(overlap, {}, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].substr(0, 48), "json schema: /properties/v/oneOf: oneOf branches");
  SchemaOptions strict;
  strict.strict_one_of = true;
  EXPECT_THROW(compile_json_schema(overlap, strict), Error);
}

TEST(JsonSchema, RefsAndRecursion) {
  run({R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],
      "additionalProperties":false}},"$ref":"#/$defs/node"})",
       {"{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}"},
       {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"}});
  run({R"({"definitions":{"a":{"type":"string"}},"type":"array","items":{"$ref":"#/definitions/a"}})",
       {"[\"x\"]"},
       {"[1]"}});
  run({R"({"type":"object","properties":{"t":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false})",
       {"{}", "{\"t\":[{},{\"t\":[]}]}"},
       {"{\"t\":[1]}"}});
}

TEST(JsonSchema, RefSiblingsFollowTheDraft) {
  // 2020-12 (the default): siblings of $ref apply as well.
  run({R"({"$defs":{"i":{"type":"integer"}},"$ref":"#/$defs/i","minimum":5})", {"5"}, {"4"}});
  // Draft 7 and older: siblings of $ref are ignored.
  run({R"({"$schema":"http://json-schema.org/draft-07/schema#","definitions":{"i":{"type":"integer"}},
      "properties":{"a":{"$ref":"#/definitions/i","type":"string"}}})",
       {"{\"a\":4}"},
       {"{\"a\":\"s\"}"}});
}

TEST(JsonSchema, Strings) {
  run({R"({"type":"string","minLength":2,"maxLength":3})",
       {"\"ab\"", "\"a\\nb\"", "\"éèê\""},
       {"\"a\"", "\"abcd\""}});
  run({R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"})",
       {"\"AB-123\""},
       {"\"AB-12\"", "\"ab-123\"", "\"xAB-123\""}});
  run({R"({"type":"string","pattern":"ab+"})", {"\"ab\"", "\"xxabbby\""}, {"\"a\"", "\"ba\""}});
  run({R"({"type":"string","pattern":"^(cat|dog)s?$"})",
       {"\"cat\"", "\"dogs\""},
       {"\"cow\"", "\"cats!\""}});
  // Anchors bind to their own branch: "^a|b$" is (^a)|(b$).
  run({R"({"type":"string","pattern":"^ab|cd$|[x]"})",
       {"\"abz\"", "\"zcd\"", "\"zxz\""},
       {"\"zab\"", "\"cdz\"", "\"q\""}});
  // '"' and newline are outside a-z, so their escapes are content; "" has no character.
  run({R"({"type":"string","pattern":"^[^a-z]+$"})",
       {"\"AB\\\"\"", "\"Z\"", "\"\\n\""},
       {"\"a\"", "\"\""}});
  run({R"({"type":"string","pattern":"^[^a-z\"]+$"})", {"\"AB\""}, {"\"A\\\"\""}});
  run({R"({"type":"string","format":"date"})",
       {"\"2024-02-29\""},
       {"\"2024-13-01\"", "\"24-01-01\""}});
  run({R"({"type":"string","format":"time"})",
       {"\"23:59:60Z\"", "\"08:30:00.5+02:00\""},
       {"\"24:00:00Z\"", "\"08:30\""}});
  run({R"({"type":"string","format":"date-time"})",
       {"\"2024-01-01T08:30:00Z\""},
       {"\"2024-01-01 08:30\""}});
  run({R"({"type":"string","format":"uuid"})",
       {"\"123e4567-e89b-12d3-a456-426614174000\""},
       {"\"123e4567\""}});
  run({R"({"type":"string","format":"email"})",
       {"\"a.b+c@example.co.uk\""},
       {"\"a@\"", "\"@b.c\"", "\"a b@c\""}});
}

TEST(JsonSchema, IntegerAndNumberBounds) {
  run({R"({"type":"integer","minimum":-15,"maximum":237})",
       {"-15", "-9", "0", "9", "10", "99", "100", "199", "230", "237"},
       {"-16", "-100", "238", "240", "300", "1000"}});
  run({R"({"type":"integer","exclusiveMinimum":0})", {"1", "10", "123456"}, {"0", "-1"}});
  run({R"({"type":"integer","minimum":5,"exclusiveMaximum":20})", {"5", "19"}, {"4", "20", "100"}});
  run({R"({"type":"integer","maximum":-3})", {"-3", "-100"}, {"-2", "0", "5"}});
  run({R"({"type":"integer","minimum":1000,"maximum":1000})", {"1000"}, {"999", "1001"}});
  run({R"({"type":"number","minimum":0})", {"0", "0.5", "12.25", "1e9"}, {"-1", "-0.5"}});
  run({R"({"type":"number","exclusiveMinimum":0})", {"0.001", "3"}, {"0", "0.0", "-2"}});
  run({R"({"type":"number","minimum":18})", {"18", "18.5", "100"}, {"17.9", "9"}});
}

TEST(JsonSchema, MoreFormats) {
  run({R"({"type":"string","format":"date"})",
       {"\"2024-02-29\"", "\"2000-02-29\"", "\"2023-04-30\"", "\"2023-12-31\""},
       {"\"2023-02-29\"", "\"1900-02-29\"", "\"2020-02-31\"", "\"2023-04-31\"", "\"2023-00-10\""}});
  run({R"({"type":"string","format":"uri"})",
       {"\"https://example.com/a?b=1#c\"", "\"urn:isbn:0451450523\"", "\"mailto:a@b.c\""},
       {"\"example.com\"", "\"http://a b\"", "\"1http://x\"", "\"http://x/%zz\""}});
  run({R"({"type":"string","format":"uri-reference"})",
       {"\"/a/b?c\"", "\"https://x\"", "\"#frag\""},
       {"\"a b\""}});
  run({R"({"type":"string","format":"hostname"})",
       {"\"example.com\"", "\"a-b.c\"", "\"localhost\""},
       {"\"-a.com\"", "\"a..b\"", "\"a_b\""}});
  run({R"({"type":"string","format":"ipv4"})",
       {"\"192.168.0.1\"", "\"255.255.255.255\"", "\"0.0.0.0\""},
       {"\"256.1.1.1\"", "\"01.1.1.1\"", "\"1.2.3\""}});
}

TEST(JsonSchema, EnumsKeepOnlyValuesOfTheType) {
  run({R"({"enum":["a",1,null],"type":["integer","null"]})", {"1", "null"}, {"\"a\""}});
  // An optional property that can never be valid is left out (and not let in as an additional one).
  run({R"({"type":"object","properties":{"x":{"enum":["a"],"type":"object"},"y":{"type":"integer"}}})",
       {"{}", "{\"y\":1}", "{\"z\":true}"},
       {"{\"x\":\"a\"}", "{\"x\":{}}"}});
  run({R"({"anyOf":[{"type":"string","enum":[1]},{"type":"integer"}]})", {"2"}, {"1.5", "\"1\""}});
  // allOf ignores annotations that differ between branches.
  run({R"({"allOf":[{"type":"integer","title":"a","x-ui":1},{"minimum":3,"title":"b","x-ui":2}]})",
       {"3"},
       {"2"}});
}

TEST(JsonSchema, PatternProperties) {
  run({R"({"type":"object","patternProperties":{"^[a-z]+$":{"type":"integer"}},"additionalProperties":false})",
       {"{}", "{\"ab\":1,\"c\":2}"},
       {"{\"A\":1}", "{\"ab\":\"x\"}", "{\"\":1}"}});
  run({R"({"type":"object","properties":{"ID":{"type":"string"}},"patternProperties":{"^x-":{"type":"null"}},
      "additionalProperties":false,"required":["ID"]})",
       {"{\"ID\":\"a\"}", "{\"x-1\":null,\"ID\":\"a\",\"x-2\":null}"},
       {"{\"ID\":\"a\",\"y\":null}", "{\"ID\":\"a\",\"x-\":1}"}});
  // A pattern matching every key: its schema applies to listed properties too.
  run({R"({"type":"object","properties":{"n":{"type":"number"}},"patternProperties":{".*":{"type":"integer"}}})",
       {"{\"n\":1}", "{\"a\":2,\"b\":3}"},
       {"{\"n\":1.5}", "{\"a\":\"s\"}"}});
}

TEST(JsonSchema, NotOfSimpleSchemas) {
  run({R"({"not":{"type":"string"}})", {"1", "null", "{}", "[\"a\"]"}, {"\"a\""}});
  run({R"({"type":["integer","string","null"],"not":{"type":["null","number"]}})",
       {"\"a\""},
       {"1", "null"}});
  run({R"({"type":"object","properties":{"a":{"not":{}},"b":{"type":"integer"}}})",
       {"{\"b\":1}", "{}"},
       {"{\"a\":1}"}});
  run({R"({"type":"integer","not":false})", {"1"}, {"\"x\""}});
  EXPECT_EQ(error_of(R"({"not":{"pattern":"a"}})"),
            "json schema: /not: not supported (only 'not' of true, false, {} or a plain type)");
}

TEST(JsonSchema, NotOfRequiredAndDeMorgan) {
  // not required: an object without the key (a non-object satisfies "required", so fails "not").
  run({R"({"not":{"required":["a"]}})",
       {"{}", "{\"b\":1}"},
       {"{\"a\":1}", "{\"b\":1,\"a\":2}", "\"x\"", "1"}});
  run({R"({"type":"object","not":{"required":["a","b"]}})",
       {"{\"a\":1}", "{\"b\":1}", "{}"},
       {"{\"a\":1,\"b\":2}"}});
  run({R"({"type":"object","not":{"anyOf":[{"required":["a"]},{"required":["b"]}]}})",
       {"{}", "{\"c\":1}"},
       {"{\"a\":1}", "{\"b\":1}"}});
  run({R"({"type":"object","properties":{"a":{"type":"integer"}},"not":{"not":{"required":["a"]}}})",
       {"{\"a\":1}"},
       {"{}", "{\"a\":\"x\"}"}});
}

TEST(JsonSchema, OneOfWithOverlappingRequiredIsExact) {
  std::vector<std::string> warnings;
  const char* s =
      R"({"type":"object","properties":{"a":{},"b":{}},"oneOf":[{"required":["a"]},{"required":["b"]}]})";
  compile_json_schema(s, {}, &warnings);
  EXPECT_TRUE(warnings.empty());
  run({s, {"{\"a\":1}", "{\"b\":2}"}, {"{\"a\":1,\"b\":2}", "{\"b\":1,\"a\":2}", "{}"}});
  // Branches with typed properties: the negation covers "present with a wrong value" too.
  run({R"({"type":"object","oneOf":[{"properties":{"r":{"type":"number"}},"required":["r"]},
       {"properties":{"l":{"type":"number"},"w":{"type":"number"}},"required":["l","w"]}]})",
       {"{\"r\":1}", "{\"l\":1,\"w\":2}", "{\"r\":1,\"l\":1}", "{\"r\":\"x\",\"l\":1,\"w\":2}"},
       {"{\"r\":1,\"l\":1,\"w\":2}", "{}", "{\"r\":\"x\"}", "{\"l\":1,\"w\":2,\"r\":3}"}});
}

TEST(JsonSchema, EnumFilteredByEveryKeyword) {
  // Keywords the grammar cannot express are honoured on a finite set of values.
  run({R"({"enum":[1,2,3,4,6.5,8],"multipleOf":2})", {"2", "4", "8"}, {"1", "3", "6.5"}});
  run({R"({"allOf":[{"enum":["a","bb","ccc"]},{"not":{"maxLength":1}}]})",
       {"\"bb\"", "\"ccc\""},
       {"\"a\""}});
  run({R"({"enum":[[1,1],[1,2],[]],"uniqueItems":true})", {"[1,2]", "[]"}, {"[1,1]"}});
  run({R"({"enum":[{"k":"x","v":1},{"k":"y","v":1},{"k":"x","v":"s"}],
       "if":{"properties":{"k":{"const":"x"}}},"then":{"properties":{"v":{"type":"integer"}}},
       "else":{"properties":{"v":{"type":"string"}}}})",
       {"{\"k\":\"x\",\"v\":1}"},
       {"{\"k\":\"y\",\"v\":1}", "{\"k\":\"x\",\"v\":\"s\"}"}});
  run({R"({"const":{"b":1,"a":2},"dependencies":{"a":["b"]},"propertyNames":{"maxLength":1}})",
       {"{\"b\":1,\"a\":2}"},
       {"{\"a\":2,\"b\":1}"}});
  run({R"({"$defs":{"e":{"enum":["ab","cd","x"]}},"allOf":[{"$ref":"#/$defs/e"}],"pattern":"^[ab]"})",
       {"\"ab\""},
       {"\"cd\"", "\"x\""}});
  // Drafts 4-7 ignore the siblings of $ref, enum included.
  run({R"({"$schema":"http://json-schema.org/draft-07/schema#","$defs":{"p":{"type":["string","object"]}},
       "$ref":"#/$defs/p","enum":["a"]})",
       {"\"a\"", "\"b\"", "{}"},
       {"1"}});
  EXPECT_EQ(error_of(R"({"enum":[1,3],"multipleOf":2})"),
            "json schema: /: no enum/const value satisfies the schema");
}

TEST(JsonSchema, Dependencies) {
  run({R"({"type":"object","properties":{"a":{},"b":{},"c":{"type":"integer"}},"dependencies":{"a":["b"],
       "c":{"required":["a"]}}})",
       {"{}", "{\"b\":1}", "{\"a\":1,\"b\":2}", "{\"c\":1,\"a\":2,\"b\":3}"},
       {"{\"a\":1}", "{\"c\":1,\"b\":2}", "{\"c\":\"x\",\"a\":1,\"b\":2}"}});
  run({R"({"type":"object","dependentRequired":{"x":["y"]}})",
       {"{\"y\":1}", "{\"x\":1,\"y\":2}", "{\"q\":1}"},
       {"{\"x\":1}", "{\"q\":1,\"x\":2}"}});
  EXPECT_EQ(error_of(R"({"dependencies":{"a":["b"]}})"),
            "json schema: /dependencies: not supported");
}

TEST(JsonSchema, PatternPropertiesBesideFreeKeys) {
  // One pattern; keys it does not match take additionalProperties (any value by default).
  run({R"({"type":"object","patternProperties":{"^[a-z_]+$":{"type":"integer"}}})",
       {"{\"ab\":1,\"A\":\"x\",\"\":\"y\",\"a1\":\"z\",\"a_b\":2}", "{}"},
       {"{\"ab\":\"x\"}", "{\"A\":1,\"a_b\":\"s\"}"}});
  run({R"({"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":{"type":"integer"}})",
       {"{\"x-a\":\"s\",\"y\":1,\"x\":2,\"\":3,\"X-\":4}"},
       {"{\"x-a\":1}", "{\"y\":\"s\"}", "{\"x-\":2}"}});
  run({R"({"patternProperties":{"^[a-z]{2,3}$":{"type":"integer"}}})",
       {"{\"ab\":1,\"a\":\"s\",\"abcd\":\"s\",\"Ab\":\"s\",\"abc\":2}"},
       {"{\"abc\":\"s\"}", "{\"ab\":null}"}});
  run({R"({"patternProperties":{"^[a-z]+$":false}})", {"{\"A\":1}", "{}"}, {"{\"a\":1}"}});
}

TEST(JsonSchema, PropertyCounts) {
  run({R"({"type":"object","maxProperties":2})",
       {"{}", "{\"a\":1,\"b\":2}"},
       {"{\"a\":1,\"b\":2,\"c\":3}"}});
  run({R"({"type":"object","minProperties":2})",
       {"{\"a\":1,\"b\":2,\"c\":3,\"d\":4}", "{\"a\":1,\"b\":2}"},
       {"{\"a\":1}", "{}"}});
  run({R"({"type":"object","properties":{"a":{},"b":{}},"minProperties":2,"additionalProperties":false})",
       {"{\"a\":1,\"b\":2}"},
       {"{\"a\":1}", "{\"b\":1}", "{\"a\":1,\"c\":2}"}});
  run({R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"maxProperties":2,
       "minProperties":2})",
       {"{\"a\":1,\"b\":2}", "{\"b\":1,\"a\":2}"},
       {"{\"a\":1}", "{\"a\":1,\"b\":2,\"c\":3}", "{\"b\":1,\"c\":2}"}});
  run({R"({"type":"object","maxProperties":0})", {"{}"}, {"{\"a\":1}"}});
  EXPECT_EQ(error_of(R"({"type":"object","minProperties":3,"maxProperties":2})"),
            "json schema: /maxProperties: is below minProperties");
}

TEST(JsonSchema, MultipleOf) {
  run({R"({"type":"integer","multipleOf":3})",
       {"0", "3", "-12", "999", "1002"},
       {"1", "10", "-4", "1000", "-0"}});
  run({R"({"type":"integer","multipleOf":16,"minimum":-2032,"maximum":2031})",
       {"-2032", "0", "2016", "-16"},
       {"2032", "8", "-2048"}});
  run({R"({"type":"integer","multipleOf":4,"minimum":-7,"maximum":9})",
       {"-4", "0", "8"},
       {"-8", "12", "2"}});
  run({R"({"type":"number","multipleOf":0.01})",
       {"1", "19.99", "-0.5", "0.070", "3.0", "0"},
       {"0.001", "1.234", "-0.005"}});
  run({R"({"type":"number","multipleOf":1,"minimum":0})", {"2", "2.0", "0"}, {"2.5", "-1"}});
}

TEST(JsonSchema, PatternWithLengthBounds) {
  // Lengths count characters (code points), escapes included as one.
  run({R"({"type":"string","pattern":"^[a-z]+:[0-9]*$","minLength":3,"maxLength":5})",
       {"\"a:1\"", "\"ab:12\"", "\"abcd:\""},
       {"\"a:\"", "\"abc:12\"", "\"A:1\"", "\"a1\""}});
  run({R"({"type":"string","pattern":"[0-9]{2}","maxLength":4})",
       {"\"12\"", "\"a12b\"", "\"x99\"", "\"\u00e912\""},
       {"\"12345\"", "\"a1b2\"", "\"abcd\""}});
  run({R"({"type":"string","pattern":"^([a-z]+)?-(?:[0-9])?$","minLength":2})",
       {"\"a-\"", "\"-1\"", "\"ab-3\""},
       {"\"-\"", "\"a-12\""}});
  run({R"({"type":"string","pattern":"^[ab]{2,3}$","minLength":3})",
       {"\"aba\""},
       {"\"ab\"", "\"abab\""}});
  run({R"({"type":"string","pattern":"^.*$","minLength":2})",
       {"\"\u00e9\u00e9\"", "\"\\t\\t\"", "\"abc\""},
       {"\"a\"", "\"\\t\"", "\"a\\nb\""}});
  EXPECT_EQ(error_of(R"({"type":"string","pattern":"^(ab|c)$","maxLength":3})").substr(0, 80),
            "json schema: /pattern: pattern together with minLength/maxLength is supported on");
  EXPECT_EQ(error_of(R"({"type":"string","pattern":"^[a-z]{5}$","maxLength":3})"),
            "json schema: /: no string matches the pattern within the length bounds");
}

TEST(JsonSchema, AllOfKeepsEachBranchAdditionalProperties) {
  // additionalProperties false of one branch forbids what only the other lists.
  run({R"({"allOf":[{"properties":{"a":{}}}],"properties":{"b":{}},"additionalProperties":false})",
       {"{\"b\":1}", "{}"},
       {"{\"a\":1}", "{\"b\":1,\"a\":2}", "{\"c\":1}"}});
  run({R"({"allOf":[{"properties":{"a":{}},"additionalProperties":{"type":"integer"}},
       {"properties":{"b":{"type":"string"}}}]})",
       {"{\"a\":\"x\"}", "{\"c\":1}"},
       {"{\"b\":\"s\"}", "{\"c\":\"s\"}", "{\"b\":1}"}});
}

TEST(JsonSchema, NonStandardFormatsAreAnnotations) {
  std::vector<std::string> warnings;
  compile_json_schema(R"({"properties":{"p":{"type":"string","format":"path","maxLength":3}}})", {},
                      &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0],
            "json schema: /properties/p/format: format 'path' is defined by no JSON Schema draft; "
            "ignored (an annotation)");
  run({R"({"type":"string","format":"byte","minLength":2})",
       {"\"ab\"", "\"a/b c\""},
       {"\"a\"", "1"}});
  EXPECT_EQ(error_of(R"({"type":"string","format":"duration"})"),
            "json schema: /format: format 'duration' is not supported");
}

TEST(JsonSchema, PropertiesInAnyOrder) {
  // Up to 6 listed properties: any order, each at most once, required ones present.
  const char* s =
      R"({"type":"object","properties":{"a":{"type":"integer"},"b":{},"c":{}},"required":["a"],
      "additionalProperties":false})";
  run({s,
       {"{\"a\":1}", "{\"c\":1,\"a\":2}", "{\"b\":1,\"c\":2,\"a\":3}", "{\"c\":1,\"b\":2,\"a\":3}"},
       {"{\"c\":1}", "{\"a\":1,\"a\":2}", "{\"c\":1,\"a\":\"x\"}", "{\"a\":1,\"d\":2}", "{}"}});
  run({R"({"type":"object","properties":{"a":{},"b":{}}})",
       {"{\"b\":1,\"x\":2,\"a\":3}", "{\"x\":1}", "{}"},
       {"{\"b\":1,\"b\":2}"}});
  // More: schema order, or the required ones first in "required" order.
  const char* big =
      R"({"type":"object","properties":{"a":{},"b":{},"c":{},"d":{},"e":{},"f":{},"g":{}},
      "required":["g","c"]})";
  run({big,
       {"{\"a\":1,\"c\":2,\"g\":3}", "{\"g\":1,\"c\":2,\"a\":3,\"f\":4}", "{\"c\":1,\"g\":2}"},
       {"{\"g\":1}", "{\"a\":1,\"a\":2,\"c\":1,\"g\":1}"}});
}

TEST(JsonSchema, ExhaustiveNumberRanges) {
  const char* bounds[] = {R"("minimum":-2,"maximum":3)",
                          R"("exclusiveMinimum":-2,"exclusiveMaximum":3)",
                          R"("minimum":1)",
                          R"("exclusiveMinimum":1)",
                          R"("maximum":-1)",
                          R"("exclusiveMaximum":0)",
                          R"("minimum":0,"exclusiveMaximum":10)",
                          R"("minimum":2,"maximum":2)",
                          R"("minimum":-12,"exclusiveMaximum":-3)",
                          R"("minimum":0,"exclusiveMinimum":true,"maximum":5)"};
  struct B {
    double lo, hi;
    bool lo_x, hi_x;
  };
  const B ranges[] = {{-2, 3, false, false}, {-2, 3, true, true},      {1, 1e9, false, false},
                      {1, 1e9, true, false}, {-1e9, -1, false, false}, {-1e9, 0, false, true},
                      {0, 10, false, true},  {2, 2, false, false},     {-12, -3, false, true},
                      {0, 5, true, false}};
  for (size_t b = 0; b < std::size(bounds); ++b) {
    const std::string schema = std::string("{\"type\":\"number\",") + bounds[b] + "}";
    const auto g = std::make_shared<const Grammar>(compile_json_schema(schema));
    for (int q = -60; q <= 60; ++q) {  // quarters from -15 to 15, spelled several ways
      const double v = q / 4.0;
      const bool in = (ranges[b].lo_x ? v > ranges[b].lo : v >= ranges[b].lo) &&
                      (ranges[b].hi_x ? v < ranges[b].hi : v <= ranges[b].hi);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", v);
      std::vector<std::string> spellings = {buf};
      if (q % 4 == 0) spellings.push_back(std::to_string(q / 4));
      for (const std::string& sp : spellings) {
        if (sp == "-0" || sp == "-0.00")
          continue;  // negative zero: not a spelling the grammar offers
        EXPECT_EQ(accepts(g, sp), in) << schema << " at " << sp;
      }
    }
  }
}

TEST(JsonSchema, ExhaustiveIntegerRanges) {
  for (int lo : {-120, -7, 0, 3, 95}) {
    for (int hi : {-5, 0, 9, 10, 101, 999}) {
      if (lo > hi) continue;
      const std::string schema = "{\"type\":\"integer\",\"minimum\":" + std::to_string(lo) +
                                 ",\"maximum\":" + std::to_string(hi) + "}";
      const auto g = std::make_shared<const Grammar>(compile_json_schema(schema));
      for (int v = -1100; v <= 1100; ++v)
        ASSERT_EQ(accepts(g, std::to_string(v)), v >= lo && v <= hi) << schema << " at " << v;
    }
  }
}

TEST(JsonSchema, UnsupportedFeaturesNameTheirPointer) {
  EXPECT_EQ(
      error_of(R"({"type":"object","properties":{"x":{"type":"object","propertyNames":{}}}})"),
      "json schema: /properties/x/propertyNames: not supported");
  EXPECT_EQ(
      error_of(
          R"({"type":"object","properties":{"x":{"type":"object","patternProperties":{"a+b":{}}}}})"),
      "json schema: /properties/x/patternProperties: supported only with additionalProperties "
      "false, one "
      "pattern matching every key, or one pattern of the form ^[...]{m,n}$ or ^literal and no "
      "listed "
      "properties");
  EXPECT_EQ(
      error_of(
          R"({"properties":{"ab":{}},"patternProperties":{"^a":{}},"additionalProperties":false})"),
      "json schema: /patternProperties: listed property 'ab' also matches a pattern");
  EXPECT_EQ(error_of(R"({"items":{"then":{}}})"), "json schema: /items/then: not supported");
  run({R"({"type":"array","items":{"not":{}}})", {"[]"}, {"[1]"}});
  EXPECT_EQ(error_of(R"({"type":"string","format":"ipv6"})"),
            "json schema: /format: format 'ipv6' is not supported");
  EXPECT_EQ(error_of(R"({"type":"array","uniqueItems":true})"),
            "json schema: /uniqueItems: not supported");
  EXPECT_EQ(error_of(R"({"type":"number","maximum":3.5})"),
            "json schema: /maximum: bounds on 'number' must be integers within 10^18");
  EXPECT_EQ(error_of(R"({"$ref":"http://x/y.json"})"),
            "json schema: /$ref: only local references (\"#...\") are supported");
  EXPECT_EQ(error_of(R"({"$ref":"#/nope"})"),
            "json schema: /$ref: reference '#/nope' does not resolve");
  EXPECT_EQ(
      error_of(R"J({"properties":{"a/b":{"type":"string","pattern":"(?=x)"}}})J").substr(0, 47),
      "json schema: /properties/a~1b/pattern: pattern:");
  EXPECT_EQ(error_of(R"({"allOf":[{"type":"string"},{"type":"integer"}]})"),
            "json schema: /allOf: the branches' types do not intersect");
  EXPECT_EQ(error_of(R"({"type":"number","multipleOf":0.3})"),
            "json schema: /multipleOf: not supported (only 1, 0.1, 0.01, ... for numbers)");
  EXPECT_EQ(error_of(R"({"type":"object","properties":{"q":{"type":"array","uniqueItems":true}}})"),
            "json schema: /properties/q/uniqueItems: not supported");
  EXPECT_EQ(error_of(R"({"type":"array","items":false,"minItems":1})"),
            "json schema: /: minItems is above the most items the array can hold");
  EXPECT_EQ(error_of(R"({"type":"strin"})"), "json schema: /type: unknown type 'strin'");
  EXPECT_EQ(error_of("{\"type\":"), error_of("{\"type\":"));  // invalid JSON: an error, no crash
  EXPECT_NE(error_of("{\"type\":").find("invalid JSON"), std::string::npos);
  EXPECT_NE(error_of(std::string(1000, '[') + std::string(1000, ']')).find("nested deeper"),
            std::string::npos);
  EXPECT_EQ(error_of(R"({"if":{}})"), "json schema: /if: not supported");
  // Unsatisfiable where nothing can stand in for it.
  EXPECT_EQ(error_of(R"({"properties":{"a":false},"required":["a"]})"),
            "json schema: /properties/a: schema 'false' matches nothing");
  EXPECT_EQ(error_of(R"({"type":"integer","minimum":5,"maximum":4})"),
            "json schema: /: no integer lies between the bounds");
}

}  // namespace
}  // namespace slm::grammar
