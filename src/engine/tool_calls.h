// Tool calls in a model's own syntax, per family: which syntax a chat
// template speaks (detected from its text), parsing an answer into content and
// calls (whole or streamed), and the grammar that forces an answer to be calls
// (tool_choice "required" or a named function), so every call's arguments
// validate against the function's parameters schema.
//
// Families:
//   kHermes        Qwen 2.5 / 3, Hermes 2 Pro / 3, and the fallback:
//                  <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>, repeated
//   kLlama3        Llama 3.1-3.3: {"name": N, "parameters": {...}} (after an optional
//                  <|python_tag|>, several separated by ';'), and Functionary v3.1's
//                  <function=N>{...}</function>
//   kMistral       Mistral / Nemo: [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]
//   kFunctionary   Functionary v3.2: the prompt ends in ">>>"; the answer is
//                  "all\ntext" or "N\n{...}", further calls ">>>N\n{...}"
// Control tokens ([TOOL_CALLS], <|python_tag|>) may be absent from the decoded
// text (they are not rendered): the parsers accept the syntax without them.
// Text that does not form a complete, well-formed call stays content.
//
// Thread-safety: pure functions; a ToolCallStream belongs to one response.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace slm::engine {

enum class ToolFormat { kHermes, kLlama3, kMistral, kFunctionary };
// "hermes", "llama3", "mistral", "functionary"
std::string_view tool_format_name(ToolFormat f);
// The syntax a chat template's source (its Jinja text) asks the model for.
ToolFormat detect_tool_format(std::string_view template_source);

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text (an object, compact)
};

struct ToolParse {
  std::string content;  // the answer without the calls (trimmed when calls were found)
  std::vector<ToolCall> calls;
};

// Parses a whole answer.
ToolParse parse_tool_calls(ToolFormat f, std::string_view text);

// Incremental parsing of a streamed answer: content is passed on as soon as
// it cannot be the start of a call; text that may be a call is held until it
// completes (a Hermes block at its closing tag, the other syntaxes at the end).
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolFormat f) : format_(f) {}
  // Appends text; returns what is now certain (content and complete calls).
  ToolParse feed(std::string_view text);
  // The answer ended: whatever is held, parsed.
  ToolParse finish();

 private:
  ToolFormat format_;
  std::string held_;     // text not yet passed on
  bool in_calls_ = false;  // a call syntax started: nothing more is content until the end
  bool decided_ = false;   // the answer's start was seen (formats whose calls come first)
  size_t n_emitted_ = 0;   // calls passed on by feed()
};

struct ToolSpec {
  std::string name;        // [A-Za-z0-9_-], at most 64 bytes
  std::string parameters;  // JSON Schema text of the arguments ("{}": any object)
};

// GBNF (ready for grammar::parse_gbnf) of an answer made of calls only: one,
// or with parallel one or more, each to one of tools with arguments valid
// under its parameters schema. Throws slm::Error "TOOL: json schema: POINTER:
// why" when a schema does not compile (SchemaOptions bound the size).
std::string tool_call_gbnf(ToolFormat f, const std::vector<ToolSpec>& tools, bool parallel);

// Prefixes every rule name of a GBNF text (definitions and references) with
// prefix, leaving literals, classes and comments alone.
std::string prefix_gbnf_rules(std::string_view gbnf, std::string_view prefix);

}  // namespace slm::engine
