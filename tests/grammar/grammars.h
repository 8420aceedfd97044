// GBNF grammars shared by the grammar tests.
#pragma once

namespace slm::grammar::test {

// JSON (RFC 8259), written for these tests.
inline constexpr const char* kJsonGbnf = R"G(
root   ::= ws value ws
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
member ::= string ws ":" ws value
array  ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws     ::= [ \t\n\r]*
)G";

inline constexpr const char* kArithmeticGbnf = R"G(
root ::= expr
expr ::= term ( [-+] term )*
term ::= factor ( [*/] factor )*
factor ::= [0-9]+ | "(" expr ")" | "-" factor
)G";

}  // namespace slm::grammar::test
