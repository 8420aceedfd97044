// GBNF parsing: accepted syntax, lowering shapes, and errors with LINE:COL.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "grammar/grammar.h"

namespace slm::grammar {
namespace {

std::string parse_error(const std::string& text, const GrammarLimits& lim = {}) {
  try {
    parse_gbnf(text, lim);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gbnf, ParsesTheDocumentedSyntax) {
  const char* text = R"(# a comment
root ::= item+ ( "," item )* end?   # trailing comment
item ::= [a-z_] [^\n\]"] "lit\x41\u00e9\"" . | "x"{2} | "y"{1,} | "z"{1,3}
end  ::=
  "!" |
  "?"
  | "." # continuation line
)";
  const Grammar g = parse_gbnf(text);
  EXPECT_EQ(g.rule_names[g.root], "root");
  EXPECT_GT(g.alts.size(), 3u);
}

TEST(Gbnf, CharClassesNormalise) {
  const Grammar g = parse_gbnf("root ::= [c-ea-b] [^a] [\\u00e0-\\u00ff]\n");
  ASSERT_EQ(g.alts[g.root].size(), 1u);
  const auto& cls = g.classes[g.code[g.alts[g.root][0]].arg];
  ASSERT_EQ(cls.ranges.size(), 1u);  // a-b and c-e merge
  EXPECT_EQ(cls.ranges[0].lo, U'a');
  EXPECT_EQ(cls.ranges[0].hi, U'e');
  EXPECT_TRUE(cls.contains('c'));
  EXPECT_FALSE(cls.contains('f'));
  const auto& neg = g.classes[g.code[g.alts[g.root][0] + 1].arg];
  EXPECT_FALSE(neg.contains('a'));
  EXPECT_TRUE(neg.contains(0x10FFFF));
  EXPECT_FALSE(neg.contains(0xD800));  // surrogates are never characters
}

TEST(Gbnf, ErrorsNameLineAndColumn) {
  EXPECT_EQ(parse_error("root ::= \"a\"\nfoo ::= bar\n"), "2:9: undefined rule 'bar'");
  EXPECT_EQ(parse_error("root ::= \"abc\n"), "1:10: unterminated literal");
  EXPECT_EQ(parse_error("root ::= [abc\n"), "1:10: unterminated character class");
  EXPECT_EQ(parse_error("root ::= \"a\" )\n"), "1:14: unexpected ')'");
  EXPECT_EQ(parse_error("root = \"a\"\n"), "1:6: expected '::=' after 'root'");
  EXPECT_EQ(parse_error("item ::= \"a\"\n"), "2:1: the grammar has no 'root' rule");
  EXPECT_EQ(parse_error("root ::= * \"a\"\n"), "1:10: '*' has nothing to repeat");
  EXPECT_EQ(parse_error("root ::= \"a\"{3,1}\n"), "1:13: repetition {m,n} has n < m");
  EXPECT_EQ(parse_error("root ::= \"a\" \"b\" x ::= \"c\"\n"),
            "1:18: expected a newline before the next rule");
  EXPECT_EQ(parse_error("root ::= [z-a]\n"), "1:11: character range is reversed");
  EXPECT_EQ(parse_error("root ::= \"\\q\"\n"), "1:11: unknown escape '\\q'");
  EXPECT_EQ(parse_error("root ::= \"\\xZ1\"\n"), "1:13: expected a hex digit in escape");
  EXPECT_EQ(parse_error("root ::= \"\\uD800\"\n"), "1:11: escape is not a Unicode scalar value");
  EXPECT_EQ(parse_error("root ::= \"a\"\nroot ::= \"b\"\n"), "2:1: rule 'root' is defined twice");
  EXPECT_EQ(parse_error("root ::= (\"a\"\n"), "2:1: expected ')'");
  EXPECT_EQ(parse_error("root ::= \"\xff\"\n"), "1:11: invalid UTF-8 in grammar");
  EXPECT_EQ(parse_error("root ::= [^\\u0000-\\U0010FFFF]\n"), "1:10: character class matches nothing");
}

TEST(Gbnf, RefusesRecursionWithoutInput) {
  EXPECT_NE(parse_error("root ::= root \"a\" | \"b\"\n").find("left recursion"), std::string::npos);
  EXPECT_NE(parse_error("root ::= x\nx ::= y? root \"a\" | \"b\"\ny ::= \"c\"\n").find("'root'"),
            std::string::npos);
  EXPECT_NE(parse_error("root ::= t\nt ::= \"a\"? t \"b\" | \"c\"\n").find("can recurse without consuming input"),
            std::string::npos);
  // A repetition of something that can be empty only loops in tail position: fine.
  EXPECT_EQ(parse_error("root ::= (\"a\"?)* ( [b]* )+ \"c\"\n"), "");
  // Right recursion is fine.
  EXPECT_EQ(parse_error("root ::= \"a\" root | \"b\"\n"), "");
}

TEST(Gbnf, LimitsAreEnforced) {
  GrammarLimits lim;
  lim.max_repeat = 10;
  EXPECT_EQ(parse_error("root ::= \"a\"{11}\n", lim), "1:14: repetition count is above the limit");
  lim = {};
  lim.max_nesting = 3;
  EXPECT_EQ(parse_error("root ::= ((((\"a\"))))\n", lim), "1:13: groups are nested too deeply");
  lim = {};
  lim.max_elements = 100;
  EXPECT_NE(parse_error("root ::= \"a\"{50} \"b\"{60}\n", lim).find("too large"), std::string::npos);
  lim = {};
  lim.max_source_bytes = 4;
  EXPECT_NE(parse_error("root ::= \"a\"\n", lim).find("larger than the limit"), std::string::npos);
}

}  // namespace
}  // namespace slm::grammar
