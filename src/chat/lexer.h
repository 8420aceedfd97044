// Splits a template into text and the tokens inside its tags, applying the
// whitespace rules Hugging Face configures: trim_blocks and lstrip_blocks on,
// '-' and '+' markers on every tag kind, newlines normalised to "\n" and one
// trailing newline dropped (jinja2's keep_trailing_newline=False). Comments
// vanish here and {% raw %} bodies become plain text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::chat {

enum class TokenType {
  kText,        // literal template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,      // value holds the decoded string
  kInt,
  kFloat,
  kOp,          // value holds the operator: "+", "//", "==", "(", ...
  kEof,
};

struct Token {
  TokenType type = TokenType::kEof;
  std::string value;
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// Throws TemplateError (with the line) on unterminated tags, comments, strings
// and raw blocks, on characters no token starts with, and on integer literals
// beyond int64.
std::vector<Token> tokenize(std::string_view source);

}  // namespace slm::chat
