// Parsing and validation of OpenAI-shaped request bodies for
// /v1/chat/completions and /v1/completions. Every field is checked for type
// and range before anything runs (style.md §8; a negative or huge number in a
// server field is how llama-server got out-of-bounds writes); a bad field
// raises ApiError naming it, in the shape OpenAI's clients expect. Unknown
// fields are ignored, as OpenAI does. No model is needed here: checks that
// depend on the vocabulary take its size.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "engine/sampler.h"

namespace slm::server {

// An error the client caused (or a server condition it must see), rendered
// as {"error": {"message", "type", "param", "code"}} with HTTP status.
class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {},
           std::string type = "invalid_request_error")
      : Error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)),
        type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }  // empty: null
  const std::string& code() const { return code_; }    // empty: null
  const std::string& type() const { return type_; }

 private:
  int status_;
  std::string param_, code_, type_;
};

// The OpenAI error object for e.
nlohmann::json error_json(const ApiError& e);

enum class Endpoint { kChat, kCompletion };

struct RequestLimits {
  int64_t n_vocab = 0;         // for logit_bias and token-id prompts
  int64_t max_tokens_cap = 0;  // largest max_tokens accepted; 0: no cap
  size_t max_stops = 16;
  size_t max_stop_bytes = 1024;
  int max_json_depth = 64;  // nesting deeper than this is refused before parsing
};

// Server-wide defaults (slm serve -n, --temp, --system) for what a request
// leaves out; an explicit field always wins.
struct RequestDefaults {
  int64_t max_tokens = 0;            // 0: what fits beside the prompt, up to the cap
  std::optional<float> temperature;  // none: OpenAI's 1
  std::string system;                // chat: a system message put first when the messages have none
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;  // as sent; empty when absent
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage

  // Chat: messages normalised to {"role", "content": string, ...}; "developer"
  // becomes "system" and lists of text parts become one string.
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;  // null when none
  // Completions: text, or token ids when the prompt was given as ids.
  std::string prompt;
  std::vector<int32_t> prompt_tokens;
  bool prompt_is_tokens = false;

  std::optional<int64_t> max_tokens;  // max_completion_tokens wins over max_tokens
  // max_tokens came from RequestDefaults: it shrinks to fit beside a long
  // prompt instead of refusing it.
  bool max_tokens_defaulted = false;
  engine::SamplerParams sampling;     // OpenAI defaults: temperature 1, top_p 1, no top-k / min-p
  bool seed_given = false;
  std::vector<std::string> stops;
  bool logprobs = false;
  int top_logprobs = 0;  // alternatives per token when logprobs
  std::string user;
  // Extension (as llama.cpp's server has it): never end at an end-of-text
  // token, so benchmarks generate exactly max_tokens.
  bool ignore_eos = false;

  // Structured output: response_format json_object / json_schema, or the
  // extension field "grammar" (GBNF text). Compiled by the server (schema.h).
  enum class Format { kText, kJsonObject, kJsonSchema, kGrammar };
  Format format = Format::kText;
  std::string format_source;  // schema JSON (compact) or GBNF text
  bool format_strict = false;  // json_schema.strict

  // Tools: tool_choice (default auto with tools, none without) and
  // parallel_tool_calls (default true).
  enum class ToolChoice { kNone, kAuto, kRequired, kNamed };
  ToolChoice tool_choice = ToolChoice::kNone;
  std::string tool_choice_name;  // kNamed
  bool parallel_tool_calls = true;
};

// Parse one request body, filling what it leaves out from defaults. Throws
// ApiError (400 with the field in param).
ParsedRequest parse_request(Endpoint endpoint, std::string_view body, const RequestLimits& limits,
                            const RequestDefaults& defaults = {});

// --- JSON text helpers, exposed for tests -------------------------------

// The member path ("messages[1].content") of the JSON value that contains
// byte offset in text, as far as the text up to offset shows it. Empty at the
// top level. Works on malformed text: it only tracks brackets, keys and strings.
std::string json_path_at(std::string_view text, size_t offset);
// Deepest nesting of arrays and objects in text (strings skipped).
int json_depth(std::string_view text);

}  // namespace slm::server
