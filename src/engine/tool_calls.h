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
  std::string arguments;  // JSON text of an object, compact (see below)
};

struct ToolParse {
  std::string content;  // the answer without the calls (trimmed when calls were found)
  std::vector<ToolCall> calls;
};

// A call's arguments are the object the model wrote with the whitespace
// outside strings removed: keys in the model's order, numbers and string
// escapes as written ("arguments" given as a JSON string: its decoded text,
// compacted the same way). Not re-serialised, so that a streamed call can send
// its arguments as the model writes them and the concatenated fragments equal
// the whole answer's arguments byte for byte.
//
// forced: the answer was decoded under tool_call_gbnf (tool_choice required or
// named), so it is calls in exactly that grammar's framing and can only end
// early (max_tokens, a stop string). Such an answer is parsed by
// ToolCallStream's framing matcher (a whole answer is one feed), and a call cut
// short keeps the arguments written so far, as OpenAI's API does with
// finish_reason "length"; an answer whose first call never got its name is
// parsed as unforced (cut short before then, or straying from the framing,
// the text is not lost). Unforced answers use the family's parser.
ToolParse parse_tool_calls(ToolFormat f, std::string_view text, bool forced = false);

// A piece of a streamed call: `name` is set on a call's first piece (its start:
// the name is final), `arguments` is text to append to the call's arguments.
struct ToolCallDelta {
  size_t index = 0;  // 0, 1, ... in the order of the calls
  std::string name;
  std::string arguments;
};

struct ToolStreamOut {
  std::string content;
  std::vector<ToolCallDelta> deltas;
};

// Appends deltas to calls (a delta with a name starts calls[index]).
void apply_tool_deltas(std::vector<ToolCall>& calls, const std::vector<ToolCallDelta>& deltas);

// Incremental parsing of a streamed answer. Whatever the chunking, the
// concatenated content and the calls assembled from the deltas equal
// parse_tool_calls(f, whole answer, forced), and nothing passed on is ever
// taken back:
//  - forced: nothing is content (unless no call ever gets its name, see
//    above); a call's name goes out when its closing quote (Functionary: its
//    newline) arrives, then its arguments byte by byte as they arrive (less
//    whitespace outside strings), since the grammar guarantees they complete
//    as written unless the answer ends.
//  - unforced: the model may write something that starts like a call and is
//    not one (then it is content), so a call is held until it is complete and
//    passes as its name then its whole arguments. Content goes out as soon as
//    it cannot be the start of a call (a Hermes block is decided at its
//    closing tag, the other syntaxes at the end).
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolFormat f, bool forced = false) : format_(f), forced_(forced) {}
  // Appends text; returns what is now certain.
  ToolStreamOut feed(std::string_view text);
  // The answer ended: whatever is held, parsed.
  ToolStreamOut finish();

 private:
  // The forced matcher's stages: the literals of the family's framing (see
  // framing() in tool_calls.cpp), the name, the arguments, between calls.
  enum class Stage {
    kPre,
    kOpen,
    kName,
    kMid,
    kArgsStart,
    kArgs,
    kClose,
    kBetween,
    kSep,
    kPost,
    kDone,
    kDead
  };

  // Unforced: the family parsers, whole calls.
  ToolParse feed_unforced(std::string_view text);
  ToolParse finish_unforced();
  ToolStreamOut as_deltas(ToolParse&& p);
  // Forced: the framing matcher, one byte at a time.
  void step(char c, ToolStreamOut& out);
  void enter(Stage stage);

  ToolFormat format_;
  bool forced_;
  std::string held_;       // text not yet passed on
  bool in_calls_ = false;  // a call syntax started: nothing more is content until the end
  bool decided_ = false;   // the answer's start was seen (formats whose calls come first)
  size_t n_emitted_ = 0;   // calls passed on (started, when forced)

  // Forced matcher state: the stage, the position in its literal, the call's
  // name so far, and the arguments' nesting and string state.
  Stage stage_ = Stage::kPre;
  size_t lit_ = 0;
  std::string name_;
  int depth_ = 0;
  std::string pending_;    // the answer so far, until the first call has its name
  bool fallback_ = false;  // forced, but no call got its name: parsed as unforced
  bool in_string_ = false;
  bool escape_ = false;
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
