// OpenAI response bodies and server-sent events for one request: the
// chat.completion / text_completion objects, their streaming chunks
// ("data: {json}\n\n" ... "data: [DONE]\n\n") and logprobs in both APIs'
// shapes. Text handed in is whole UTF-8 characters (the engine's
// StreamDecoder and StopMatcher see to that); token pieces in logprobs may
// split a character, so they are written with U+FFFD replacement and their
// exact bytes in "bytes".
//
// Thread-safety: one ResponseWriter per request, used by one thread.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "engine/sequence.h"
#include "server/request.h"

namespace slm::server {

// One tool call of an answer, as the API shows it.
struct ToolCallOut {
  std::string id;  // "call_..." (9 letters and digits for Mistral's template)
  std::string name;
  std::string arguments;  // JSON text
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
};

// JSON text of v; invalid UTF-8 in strings becomes U+FFFD instead of throwing.
std::string dump_json(const nlohmann::ordered_json& v);
std::string dump_json(const nlohmann::json& v);
// One server-sent event carrying data.
std::string sse_event(std::string_view data);
inline std::string sse_done() {
  return "data: [DONE]\n\n";
}

// A random request id: prefix followed by 24 letters and digits.
std::string make_request_id(std::string_view prefix);

// The API's error for a request the engine refused at submission: prompt
// length problems name the field and carry OpenAI's context_length_exceeded.
ApiError request_error(const engine::RequestError& e, const ParsedRequest& r);
// HTTP status of a failed job: 503 when the server was busy, stopping or out
// of time (the client may retry), 500 otherwise.
int error_status(const engine::Update& u);

class ResponseWriter {
 public:
  // token_piece: the bytes a token id stands for (for logprobs); may be empty
  // when logprobs are never asked for.
  ResponseWriter(Endpoint endpoint, std::string model, bool include_usage,
                 std::function<std::string(int32_t)> token_piece,
                 std::time_t created = std::time(nullptr));

  const std::string& id() const { return id_; }

  // Streaming. The chat stream opens with a chunk holding the role.
  std::string stream_start();
  // A content delta; "" when there is neither text nor logprobs.
  std::string stream_delta(std::string_view text, std::span<const engine::TokenLogprob> logprobs);
  // A streamed tool call: its start {index, id, type, function: {name,
  // arguments: ""}}, then fragments of its arguments {index, function:
  // {arguments}} (the client concatenates them).
  std::string stream_tool_call_start(size_t index, const std::string& id, const std::string& name);
  std::string stream_tool_arguments(size_t index, std::string_view fragment);
  // finish_reason "tool_calls" when tool_calls (and the answer was not cut).
  std::string stream_finish(engine::FinishReason finish, bool tool_calls = false);
  std::string stream_usage(const Usage& usage);  // only with include_usage

  // The whole non-streaming response.
  nlohmann::ordered_json complete(std::string_view text, engine::FinishReason finish,
                                  const Usage& usage,
                                  std::span<const engine::TokenLogprob> logprobs,
                                  bool want_logprobs, std::span<const ToolCallOut> tool_calls = {});

  // OpenAI's finish_reason: a full context is a length limit too.
  static const char* finish_reason(engine::FinishReason f) {
    return f == engine::FinishReason::kLength || f == engine::FinishReason::kContextFull ? "length"
                                                                                         : "stop";
  }
  static const char* finish_reason(engine::FinishReason f, bool tool_calls) {
    return tool_calls && f == engine::FinishReason::kStop ? "tool_calls" : finish_reason(f);
  }
  static nlohmann::ordered_json usage_json(const Usage& u);

 private:
  nlohmann::ordered_json chunk_base() const;
  nlohmann::ordered_json logprobs_json(std::span<const engine::TokenLogprob> logprobs);

  Endpoint endpoint_;
  std::string model_;
  bool include_usage_;
  std::function<std::string(int32_t)> token_piece_;
  std::time_t created_;
  std::string id_;
  int64_t text_offset_ = 0;  // completions logprobs: where the next token's text starts
};

}  // namespace slm::server
